"""``bench sweep``: the grid dataset x pairs x seeds as one submitit job per cohort; ``--status`` after."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from bench.cli.app import app, console
from bench.cli.run import DEFAULT_CACHE, parse_seeds
from bench.sweep.jobs import JobBook, JobEntry
from bench.sweep.plan import Grid, RunOptions, parse_pairs, plan_sweep
from bench.sweep.status import sweep_status
from bench.sweep.submit import SlurmOptions, make_executor, read_slurm_config, submit
from bench.sweep.tune import submit_workers, tune_argv
from bench.training.tracking import require_wandb, resolve_wandb_project
from bench.console.wording import plural
from registry import ConfigError

SLURM = "Job size (both launchers) and SLURM placement (also from --slurm-config)"
TUNE = "Tuning (bench tune workers)"


@app.command()
def sweep(
    dataset: Annotated[str, typer.Option(help="Dataset name (see 'bench datasets list').")] = "cifar100",
    pairs: Annotated[str, typer.Option(help="Comma-separated pairs, or 'all' pairs meant for the dataset (see 'bench pairs list').")] = "all",
    losses: Annotated[str, typer.Option(help="Comma-separated loss names; every cohort trains them all.")] = "vanilla,kd,fitnet",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds; one cohort per pair and seed.")] = "0,1,2",
    launcher: Annotated[str, typer.Option(help="local (one cohort after another on this machine) or slurm.")] = "local",
    status: Annotated[bool, typer.Option("--status", help="Show each cohort of the sweeps in RESULTS_DIR and exit.")] = False,
    tune: Annotated[bool, typer.Option("--tune", help="Start WORKERS 'bench tune' jobs per pair against one --storage instead of training cohorts.", rich_help_panel=TUNE)] = False,
    trials: Annotated[int, typer.Option(help="With --tune: trials per loss.", rich_help_panel=TUNE)] = 8,
    workers: Annotated[int, typer.Option(min=1, help="With --tune: workers per pair sharing the search.", rich_help_panel=TUNE)] = 2,
    storage: Annotated[Optional[str], typer.Option(help="With --tune: Optuna storage URL every worker reaches (default: the SQLite file of RESULTS_DIR).", rich_help_panel=TUNE)] = None,
    train_size: Annotated[Optional[int], typer.Option(min=1, help="With --tune: training images per trial.", rich_help_panel=TUNE)] = None,
    results_dir: Annotated[Path, typer.Option(help="Where runs.csv goes; the sweep's jobs are noted in RESULTS_DIR/sweep/.")] = Path("results"),
    cache_dir: Annotated[Path, typer.Option(help="Teachers and epoch checkpoints, shared by the jobs.")] = DEFAULT_CACHE,
    data_dir: Annotated[Optional[Path], typer.Option(help="Where the dataset's files are.")] = None,
    protocol: Annotated[str, typer.Option(help="Recipe protocol, e.g. 'standard' or 'fast'.")] = "standard",
    epochs: Annotated[Optional[int], typer.Option(help="Override the recipe's epochs.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Override the recipe's (global) batch size.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Override the recipe's learning rate.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Loss setting LOSS.KEY=VALUE; repeatable.")] = None,
    device: Annotated[str, typer.Option(help="The jobs' device: auto, cpu, cuda.")] = "auto",
    teacher_seed: Annotated[Optional[int], typer.Option(help="One teacher, trained with this seed, shared by every seed.")] = None,
    strong_view: Annotated[bool, typer.Option("--strong-view", help="Every batch also as a strongly augmented view (MLKD's recipe).")] = False,
    tensorboard: Annotated[bool, typer.Option("--tensorboard", help="TensorBoard event files per run.")] = False,
    wandb: Annotated[bool, typer.Option("--wandb", help="Weights & Biases curves per run (needs wandb installed).")] = False,
    wandb_project: Annotated[Optional[str], typer.Option(help="Weights & Biases project (default: env WANDB_PROJECT, else distillbench).")] = None,
    slurm_config: Annotated[Optional[Path], typer.Option(help="TOML file of SLURM settings (see bench/recipes/slurm-example.toml); options below override it.", rich_help_panel=SLURM)] = None,
    partition: Annotated[Optional[str], typer.Option(help="SLURM partition.", rich_help_panel=SLURM)] = None,
    account: Annotated[Optional[str], typer.Option(help="SLURM account.", rich_help_panel=SLURM)] = None,
    nodes: Annotated[Optional[int], typer.Option(help="Nodes per job (default 1).", rich_help_panel=SLURM)] = None,
    gpus_per_node: Annotated[Optional[int], typer.Option(help="GPUs per node, one process each (DDP) (default 0: one CPU process).", rich_help_panel=SLURM)] = None,
    time: Annotated[Optional[int], typer.Option(help="Minutes per job; longer cohorts are requeued and resume (default 1440).", rich_help_panel=SLURM)] = None,
    cpus_per_task: Annotated[Optional[int], typer.Option(help="CPUs per process (data loading).", rich_help_panel=SLURM)] = None,
    max_requeues: Annotated[Optional[int], typer.Option(help="Timeouts tolerated per job (default 3).", rich_help_panel=SLURM)] = None,
    sbatch: Annotated[Optional[list[str]], typer.Option(help="Further sbatch flag KEY=VALUE, e.g. qos=high; repeatable.", rich_help_panel=SLURM)] = None,
) -> None:
    """Train every cohort (dataset x pair x seed) not yet finished as a submitit job, locally or on SLURM."""
    if status:
        show_status(results_dir)
        return
    if wandb:
        require_wandb()
    slurm = SlurmOptions().updated(**(read_slurm_config(slurm_config) if slurm_config else {}))
    slurm = slurm.updated(partition=partition, account=account, nodes=nodes, gpus_per_node=gpus_per_node, time=time,
                          cpus_per_task=cpus_per_task, max_requeues=max_requeues,
                          sbatch={**slurm.sbatch, **_assignments(sbatch or [])} if sbatch else None)
    options = RunOptions(protocol=protocol, epochs=epochs, batch_size=batch_size, lr=lr, settings=tuple(set_ or ()),
                         device=device, data_dir=data_dir, cache_dir=cache_dir, teacher_seed=teacher_seed,
                         strong_view=strong_view, tensorboard=tensorboard, wandb_project=resolve_wandb_project(wandb_project) if wandb else None)
    grid = Grid(dataset, parse_pairs(pairs, dataset), losses, parse_seeds(seeds), results_dir, options)
    if tune:
        start_tuning(grid, trials, workers, storage, train_size, launcher, slurm)
        return
    todo, finished = plan_sweep(grid, slurm.world_size)
    book = JobBook(results_dir)
    queued = {s.entry.cohort.name for s in sweep_status(results_dir) if s.entry.job_id and s.state in ("pending", "running")}
    todo, waiting = [c for c in todo if c.name not in queued], [c for c in todo if c.name in queued]
    executor = make_executor(launcher, book.logs, slurm)
    for cohort in finished:
        typer.echo(f"{cohort.name}: finished, skipped")
    for cohort in waiting:
        typer.echo(f"{cohort.name}: already queued or running, skipped")

    def submitted(entry: JobEntry) -> None:
        typer.echo(f"{entry.cohort.name}: job {entry.job_id} ({plural(len(entry.cohort.run_ids), 'run')} to train)")

    submit(todo, grid, launcher, executor, book, on_submit=submitted)
    submitted_names = {cohort.name for cohort in todo}
    states = Counter(s.state for s in sweep_status(results_dir) if s.entry.cohort.name in submitted_names)
    now = f" ({', '.join(f'{n} {state}' for state, n in sorted(states.items()))} now)" if states else ""
    typer.echo(f"{plural(len(todo), 'cohort')} submitted{now}, {len(finished)} finished before, {len(waiting)} "
               f"already queued; see 'bench sweep --status --results-dir {results_dir}'")


def start_tuning(grid: Grid, trials: int, workers: int, storage: str | None, train_size: int | None, launcher: str,
                 slurm: SlurmOptions) -> None:
    """Validate each pair's search here (the storage reachable, the spaces sound), then start its workers."""
    argvs = [tune_argv(grid, pair, trials, storage, train_size) for pair in grid.pairs]
    for argv in argvs:
        plan_search_of(argv)
    executor = make_executor(launcher, JobBook(grid.results_dir).logs, slurm)

    def submitted(job, argv) -> None:
        typer.echo(f"{grid.dataset}/{argv[argv.index('--pair') + 1]}: tuning worker job {job.job_id}")

    jobs = submit_workers([argv for argv in argvs for _ in range(workers)], executor, launcher, submitted)
    typer.echo(f"{len(jobs)} tuning worker(s) started; watch them with optuna-dashboard "
               f"{storage or 'sqlite:///' + str(grid.results_dir / 'tuning' / grid.dataset / 'study.db')}")


def plan_search_of(argv: list[str]) -> None:
    """Plan a worker's search in this process, on the CPU: a bad input stops the sweep before any job starts."""
    from bench.cli import main

    code = main([*argv, "--plan-only", "--device", "cpu"])
    if code:
        raise typer.Exit(code)


def show_status(results_dir: Path) -> None:
    statuses = sweep_status(results_dir)
    if not statuses:
        raise ConfigError(f"no sweep recorded in {JobBook(results_dir).path}; expected the --results-dir of a bench sweep")
    rows = [(s.entry.cohort.name, s.state, s.entry.job_id or "–", str(len(s.entry.cohort.run_ids)), s.last_line)
            for s in statuses]
    headers = ("cohort", "state", "job", "runs", "last log line")
    widths = [max(len(header), *(len(row[i]) for row in rows)) for i, header in enumerate(headers)]
    out = console()
    widths[-1] = max(len(headers[-1]), min(widths[-1], out.width - sum(widths[:-1]) - 3 * len(headers) - 1))
    table = Table()  # one line per cohort at any width: the log line is cut, with an ellipsis, where it must be
    for header, width in zip(headers, widths):
        table.add_column(header, no_wrap=True, overflow="ellipsis", width=width)
    for row in rows:
        table.add_row(*row)
    out.print(table)
    counts = {state: sum(s.state == state for s in statuses) for state in ("pending", "running", "finished", "failed")}
    typer.echo(", ".join(f"{n} {state}" for state, n in counts.items()))


def _assignments(items: list[str]) -> dict[str, str]:
    pairs = [item.partition("=") for item in items]
    bad = [item for item, (key, eq, _) in zip(items, pairs) if not (key and eq)]
    if bad:
        raise ConfigError(f"--sbatch expects KEY=VALUE such as qos=high; got '{bad[0]}'")
    return {key: value for key, _, value in pairs}
