"""``bench sweep --tune``: the workers of one search as submitit jobs, each a ``bench tune`` against one storage.

Workers claim whole rounds, so any number of them share a search without training a trial twice;
one killed or requeued resumes where it stopped. Locally they run side by side on this machine.
"""

from __future__ import annotations

import submitit

from bench.sweep.plan import Grid
from bench.sweep.submit import CohortJob
from registry import ConfigError


def tune_argv(grid: Grid, pair: str, trials: int, storage: str | None, train_size: int | None) -> list[str]:
    """The ``bench tune`` every worker of ``pair``'s search runs; the sweep's options as far as they apply."""
    options = grid.options
    refused = [flag for flag, on in (("--strong-view", options.strong_view), ("--tensorboard", options.tensorboard),
                                     ("--wandb", options.wandb_project)) if on]
    if refused or len(grid.seeds) != 1:
        raise ConfigError(f"--tune searches with one seed and takes no {', '.join(refused) or 'other flag'}; got "
                          f"--seeds {','.join(map(str, grid.seeds))}" + (f" and {', '.join(refused)}" if refused else ""))
    valued = {"--storage": storage, "--train-size": train_size, "--seed": grid.seeds[0]}
    return ["tune", "--dataset", grid.dataset, "--pair", pair, "--losses", grid.losses, "--trials", str(trials),
            "--results-dir", str(grid.results_dir), *options.argv(),
            *(str(a) for option, value in valued.items() if value is not None for a in (option, value))]


def submit_workers(argvs: list[list[str]], executor: submitit.Executor, launcher: str, on_submit) -> list[submitit.Job]:
    """Start every worker (locally all at once, then wait for them); returns the jobs."""
    jobs = []
    for argv in argvs:
        job = executor.submit(CohortJob(argv))
        on_submit(job, argv)
        jobs.append(job)
    if launcher == "local":
        for job in jobs:
            job.wait()
    return jobs
