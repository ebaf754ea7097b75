"""Read the harness's ``<results_dir>/<dataset>/runs.csv`` files and pick the runs a report covers.

Nothing here writes: the filters are checked against what is on disk first, so a typo in a
filter costs nothing and leaves every earlier report in place.

Rows are read as the report compares them: ``selected_top1`` / ``selected_top5`` are the test numbers at
the validation-selected epoch, and for a run without a validation split (``val_size`` empty, so in
comparisons of its own) its best epoch on test, ``selected_on`` saying which; ``collapsed`` /
``collapse_reason`` of a row written before they were recorded are classified from its last top-1 / top-5.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from bench.store.collapse import collapse_reason_of_older_row
from bench.store.aside import set_aside
from bench.console.notices import warn
from bench.store.results import read_runs
from bench.console.wording import plural
from registry import ConfigError

RUNS_FILE = "runs.csv"

# Read as text whatever a hash or a name could be mistaken for a number in.
TEXT_COLUMNS = ("run_id", "recipe_hash", "dataset", "pair", "teacher", "student", "loss", "protocol", "stem")
USED_COLUMNS = TEXT_COLUMNS + (
    "seed", "epochs", "batch_size", "lr", "weight", "ce_weight", "hparams", "best_top1", "best_top5", "best_epoch",
    "last_top1", "last_top5", "val_size", "val_top1", "selected_epoch", "selected_top1", "selected_top5",
    "teacher_top1", "teacher_top5", "diverged",
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
    runs["selected_on"] = runs["val_size"].notna().map({True: "validation", False: "test"})
    on_test = runs["selected_on"] == "test"
    for selected, best in (("selected_top1", "best_top1"), ("selected_top5", "best_top5"), ("selected_epoch", "best_epoch")):
        runs[selected] = runs[selected].where(~on_test, runs[best])
    runs = classify_collapse(runs)
    runs["tuned"] = runs["tuned"].fillna("")  # the search a tuned run applied; "" for a recipe's settings
    runs = runs.sort_values("finished_at", kind="stable").drop_duplicates("run_id", keep="last")
    return with_teachers(runs.reset_index(drop=True))


def with_teachers(runs: pd.DataFrame) -> pd.DataFrame:
    """Add ``teacher_id`` (which weights a run distilled from) and ``teachers`` (its set of teachers).

    ``teacher_id`` is the fingerprint of the teacher's weights the row records; a row from before the
    fingerprint has only what it recorded to go on, so its identity is derived from the teacher's name,
    the device and the teacher's top-1 and top-5 ("derived:…"), unless newer rows record one fingerprint,
    and only one, for that same identity: then the older rows take it (the same teacher as far as the rows
    can tell, fingerprinted since). ``teachers`` groups the teacher ids
    that recipes use together across their seeds (connected through the recipes, each seed having
    its own teacher where the teacher is trained per seed): two recipes share it when they were trained
    against the same teachers, and the comparison key splits a group trained against two teacher sets.
    """
    runs = runs.copy()
    recorded = runs["teacher_fingerprint"] if "teacher_fingerprint" in runs else pd.Series(pd.NA, index=runs.index)
    derived = ("derived:" + runs["teacher"] + "@" + runs["device"].astype(str) + ":"
               + runs["teacher_top1"].map("{:.2f}".format) + "/" + runs["teacher_top5"].map("{:.2f}".format))
    fingerprinted = recorded.notna() & recorded.astype(str).str.strip().ne("")
    fingerprints = pd.Series(recorded[fingerprinted].to_numpy(), index=derived[fingerprinted].to_numpy())
    found = {identity: prints[0] for identity, prints in fingerprints.groupby(level=0).unique().items() if len(prints) == 1}
    runs["teacher_id"] = recorded.where(fingerprinted, derived.map(lambda identity: found.get(identity, identity)))
    teachers, ids = pd.factorize(runs["teacher_id"])
    recipes, hashes = pd.factorize(runs["recipe_hash"])
    size = len(ids) + len(hashes)  # one graph: teacher ids and recipes are its nodes, each run an edge
    links = coo_matrix((np.ones(len(runs)), (teachers, len(ids) + recipes)), shape=(size, size))
    _, component = connected_components(links, directed=False)
    members = pd.Series(ids).groupby(component[: len(ids)]).transform(lambda group: "|".join(sorted(group)))
    names = members.map(lambda text: hashlib.sha256(text.encode()).hexdigest()[:7])
    runs["teachers"] = names.to_numpy()[teachers]
    return runs


def classify_collapse(runs: pd.DataFrame) -> pd.DataFrame:
    """``collapsed`` as recorded; for rows from before it was, from their last top-1 / top-5 (never a diverged run)."""
    older = runs["collapsed"].isna() & ~runs["diverged"]
    reasons = [collapse_reason_of_older_row(top1, top5)
               for top1, top5 in zip(runs.loc[older, "last_top1"], runs.loc[older, "last_top5"])]
    runs["collapse_reason"] = runs["collapse_reason"].fillna("").astype(str)
    runs.loc[older, "collapse_reason"] = reasons
    runs["collapsed"] = flag(runs, "collapsed") | (older & runs["collapse_reason"].ne(""))
    return runs


def collapsed_apart(runs: pd.DataFrame, include_collapsed: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the runs a report counts, the collapsed runs it shows apart); ``include_collapsed`` counts them all."""
    if include_collapsed:
        return runs, runs.iloc[:0]
    return runs[~runs["collapsed"]], runs[runs["collapsed"]]


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
