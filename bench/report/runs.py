"""Read the harness's ``<results_dir>/<dataset>/runs.csv`` files and pick the runs a report covers.

Nothing here writes: the filters are checked against what is on disk first, so a typo in a
filter costs nothing and leaves every earlier report in place.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.aside import set_aside
from bench.notices import warn
from bench.results import read_runs
from bench.wording import plural
from registry import ConfigError

RUNS_FILE = "runs.csv"

# Read as text whatever a hash or a name could be mistaken for a number in.
TEXT_COLUMNS = ("run_id", "recipe_hash", "dataset", "pair", "teacher", "student", "loss", "protocol", "stem")
USED_COLUMNS = TEXT_COLUMNS + (
    "seed", "epochs", "batch_size", "lr", "best_top1", "best_top5", "last_top1", "teacher_top1", "diverged",
    "curve", "s_per_epoch", "loss_ms", "device", "torch_version", "timm_version", "distillbench_version",
    "finished_at", "command",
)


def find_datasets(results_dir: Path) -> dict[str, Path]:
    """Dataset name -> its directory, for every directory of ``results_dir`` holding a runs.csv."""
    return {path.parent.name: path.parent for path in sorted(results_dir.glob(f"*/{RUNS_FILE}"))}


def load_runs(path: Path) -> pd.DataFrame:
    """One row per run; a config run twice keeps only its latest row (same run_id)."""
    stored = read_runs(path)  # validated: a damaged row is named with its line and left out
    stored.warn_damage()
    kept = set_aside(path.parent)
    if kept:
        warn(f"{path.parent} keeps {plural(len(kept), 'damaged copy', 'damaged copies')} set aside, to recover "
             f"rows from by hand: {', '.join(p.name for p in kept)}")
    runs = stored.table
    missing = [column for column in USED_COLUMNS if column not in runs.columns]
    if missing:
        raise ConfigError(f"{path} lacks the column(s) {', '.join(missing)}; it is not a runs.csv of bench run")
    for column in ("diverged", "strong_view"):  # a file from before the strong view has no such column: one view
        runs[column] = flag(runs, column)
    runs = runs.sort_values("finished_at", kind="stable").drop_duplicates("run_id", keep="last")
    return runs.reset_index(drop=True)


def flag(table: pd.DataFrame, column: str) -> pd.Series:
    """A true/false column as CSV files write it ("True", "true", "1"); absent or anything else is false."""
    values = table[column] if column in table else pd.Series("", index=table.index)
    return values.astype(str).str.strip().str.lower().isin(("true", "1"))


def select_runs(
    results_dir: Path,
    datasets: list[str] | None = None,
    pairs: list[str] | None = None,
    losses: list[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """Dataset -> its runs of the requested pairs; every loss is kept, the Δ columns need vanilla and kd.

    A name in a filter that no run has raises ``ConfigError`` naming the names that do exist.
    """
    found = find_datasets(results_dir)
    if not found:
        raise ConfigError(f"no {results_dir}/<dataset>/{RUNS_FILE} found; `bench run` writes them")
    _check("dataset", datasets, found, results_dir)
    selected = {name: load_runs(found[name] / RUNS_FILE) for name in datasets or found}
    _check("pair", pairs, {p for runs in selected.values() for p in runs["pair"]}, results_dir)
    if pairs:
        selected = {name: runs[runs["pair"].isin(pairs)] for name, runs in selected.items()}
    _check("loss", losses, {loss for runs in selected.values() for loss in runs["loss"]}, results_dir)
    if losses:
        selected = {name: runs for name, runs in selected.items() if runs["loss"].isin(losses).any()}
    return {name: runs for name, runs in selected.items() if not runs.empty}


def _check(kind: str, asked: list[str] | None, present, results_dir: Path) -> None:
    unknown = [name for name in asked or () if name not in present]
    if unknown:
        raise ConfigError(
            f"no results for {kind} {', '.join(map(repr, unknown))} in {results_dir}; "
            f"expected one of: {', '.join(sorted(present))}"
        )
