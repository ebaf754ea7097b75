"""``bench reproduce RUN_ID``: train a stored run again from its config and set its numbers beside the stored ones."""

from __future__ import annotations

import json
import shlex
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Iterator, Optional

import torch
import typer

from bench.cli.app import app, invocation
from bench.run.reproduce import (
    ENVIRONMENT, StoredRun, changed_settings, compare, computed_numbers, differing, find_run, rerun_arguments,
)
from bench.store.results import ResultsStore
from registry import ConfigError


@app.command()
def reproduce(
    run: Annotated[str, typer.Argument(metavar="RUN_ID", help="A run_id of a runs.csv, or the path of its configs/<run_id>.json.")],
    results_dir: Annotated[Path, typer.Option(help="Where the stored run's runs.csv is.")] = Path("results"),
    scratch_dir: Annotated[Optional[Path], typer.Option(help="A new or empty directory for the reproduction, kept afterwards (default: a new temporary directory).")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Reuse this cache, e.g. its trained teacher (default: SCRATCH_DIR/cache, so the teacher is trained again too).")] = None,
    device: Annotated[Optional[str], typer.Option(help="Train on this device (default: the device of the stored run).")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress output while training.")] = False,
) -> None:
    """Train a run again from its stored command and config; compare best/last top-1 with the seed spread.

    Exit code 1: other numbers on the same hardware and library versions, or a recipe changed since.
    """
    stored = find_run(run, results_dir)
    resumable = cache_dir / "runs" / f"{stored.run_id}.pt" if cache_dir else None
    if resumable and resumable.exists():
        raise ConfigError(f"--cache-dir {cache_dir} holds a checkpoint of run {stored.run_id} ({resumable}), which "
                          f"would be resumed instead of trained again; expected another --cache-dir or none")
    scratch = _scratch(scratch_dir)
    results, cache = scratch / "results", cache_dir or scratch / "cache"
    args = rerun_arguments(stored, results, cache, device)
    if quiet and "--quiet" not in args:
        args.append("--quiet")
    row = stored.row
    typer.echo(f"run {stored.run_id}: {row['loss']}, seed {row['seed']}, {row['pair']} on {row['dataset']}, "
               f"protocol {row['protocol']}")
    typer.echo(f"training it again in {scratch}:\n  {shlex.join(['bench', *args])}")
    with _threads(stored.config.get("torch_threads")):
        _bench(args)
    store = ResultsStore(results, row["dataset"])
    reproduced = store.runs().iloc[0]
    _print_comparison(stored, reproduced)
    if reproduced["run_id"] != stored.run_id:
        config = json.loads((store.configs / f"{reproduced['run_id']}.json").read_text())
        changes = changed_settings(stored.config, config)
        typer.echo(f"not the same run: the stored command now resolves to run {reproduced['run_id']} "
                   f"(changed since: {'; '.join(changes) or 'defaults'})")
        raise typer.Exit(1)
    environment = differing(row, reproduced, ENVIRONMENT)
    if not differing(row, reproduced, computed_numbers(row)):
        typer.echo("identical: every number of the row is the same")
    elif environment:
        typer.echo("different numbers on different hardware or library versions: compare the difference "
                   "with the seed spread")
    else:
        typer.echo("NOT reproduced: the same hardware and library versions gave different numbers")
        raise typer.Exit(1)


def _scratch(path: Path | None) -> Path:
    if path is None:
        return Path(tempfile.mkdtemp(prefix="bench-reproduce-"))
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ConfigError(f"--scratch-dir {path} is not empty; expected a new or empty directory")
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


@contextmanager
def _threads(count: int | None) -> Iterator[None]:
    """CPU kernels split their sums by thread: the stored run's thread count, for the same last digits."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count or previous)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _bench(args: list[str]) -> None:
    """``bench ARGS`` in this process (``bench run`` records this invocation as its command)."""
    invocation[:] = ["bench", *args]
    try:
        app(args=args, prog_name="bench", standalone_mode=False)
    except typer.Exit as exc:  # bench run --nproc N: the exit code of its torchrun
        if exc.exit_code:
            raise


def _print_comparison(stored: StoredRun, reproduced) -> None:
    typer.echo(f"\n{'':15}{'stored':>8}{'reproduced':>12}{'difference':>12}")
    for line in compare(stored, reproduced):
        typer.echo(f"{line.label:15}{line.stored:8.2f}{line.reproduced:12.2f}{line.difference:+12.2f}  {line.verdict}")
    for column in ENVIRONMENT:
        was, now = stored.row[column], reproduced[column]
        was = "unknown" if not isinstance(was, str) else was
        typer.echo(f"{column.removesuffix('_version'):15}{'same' if was == now else 'differs'}: "
                   f"{was}{'' if was == now else f' -> {now}'}")
