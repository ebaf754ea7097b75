"""``bench tune``: search every loss's settings under one budget, on the validation split."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer

from bench.cli.app import app, invocation
from bench.cli.run import DEFAULT_CACHE
from bench.training.cohort import Acceleration
from bench.environment import resolve_device
from bench.console.progress import Reporter
from bench.run.runner import RunRequest
from bench.tune.search import TuneRequest, plan_search, run_search


@app.command()
def tune(
    losses: Annotated[str, typer.Option(help="Comma-separated loss names; each gets the same trials, epochs and data.")] = "kd",
    trials: Annotated[int, typer.Option(help="Trials per loss (trial 0: the recipe's values); a loss that searches nothing runs trial 0 only.")] = 8,
    dataset: Annotated[str, typer.Option(help="Dataset name (see 'bench datasets list').")] = "fashion-mnist",
    pair: Annotated[Optional[str], typer.Option(help="Named teacher-student pair (see 'bench pairs list').")] = None,
    protocol: Annotated[str, typer.Option(help="Recipe protocol every trial trains under.")] = "standard",
    epochs: Annotated[Optional[int], typer.Option(help="Override the protocol's epochs per trial.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Override the recipe's batch size.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Override the recipe's learning rate.")] = None,
    train_size: Annotated[Optional[int], typer.Option(min=1, help="Train each trial on this many of the students' training images (stratified, fixed by the dataset) (default: all).")] = None,
    validation_size: Annotated[Optional[int], typer.Option(min=1, help="Images of the validation split trials are scored on (default: the dataset recipe's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every trial's student and of the sampler.")] = 0,
    teacher_seed: Annotated[Optional[int], typer.Option(help="Train one teacher with this seed (default: the search's seed).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Fixed loss setting LOSS.KEY=VALUE for every trial (and trial 0's value); repeatable.")] = None,
    space: Annotated[Optional[list[str]], typer.Option(help="Search space LOSS.KEY={ search = [LOW, HIGH], log = true } over the recipe's (see bench/recipes/settings.toml); repeatable.")] = None,
    storage: Annotated[Optional[str], typer.Option(help="Optuna storage URL shared by workers, e.g. postgresql://user@host/db (default: the SQLite file RESULTS_DIR/tuning/DATASET/study.db).")] = None,
    results_dir: Annotated[Path, typer.Option(help="tuned.toml goes to RESULTS_DIR/DATASET/; trials' rows to RESULTS_DIR/tuning/DATASET/.")] = Path("results"),
    cache_dir: Annotated[Path, typer.Option(help="Teachers and checkpoints.")] = DEFAULT_CACHE,
    data_dir: Annotated[Optional[Path], typer.Option(help="Where the dataset's files are.")] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda, cuda:N.")] = "auto",
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
    plan_only: Annotated[bool, typer.Option("--plan-only", hidden=True, help="Validate the search and exit (bench sweep --tune, before it starts workers).")] = False,
) -> None:
    """Tune each loss with Optuna (TPE) on validation top-1; write RESULTS_DIR/DATASET/tuned.toml for 'bench run --tuned'."""
    command = shlex.join(invocation)
    run = RunRequest(
        dataset=dataset, losses=losses, seeds=(seed,), pair=pair, protocol=protocol, epochs=epochs,
        batch_size=batch_size, lr=lr, overrides=tuple(set_ or ()), device=device, results_dir=results_dir,
        data_dir=data_dir, cache_dir=cache_dir, teacher_seed=seed if teacher_seed is None else teacher_seed,
        validation_size=validation_size, train_size=train_size, accel=Acceleration.for_device(resolve_device(device)),
        quiet=quiet, command=command,
    )
    search = plan_search(TuneRequest(run, trials, tuple(space or ()), storage, command))
    if plan_only:
        return
    written = run_search(search, Reporter(quiet))
    if written is not None:
        typer.echo(f"tuned settings: {written} (apply with bench run --tuned)")
