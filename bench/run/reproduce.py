"""``bench reproduce``: a stored run trained again from its config, its numbers set beside the stored ones.

A run's config (``<results>/<dataset>/configs/<run_id>.json``) holds the resolved ``RunSpec``, the
``bench run`` command that made it, the device it ran on and the threads of its CPU kernels. The
reproduction is that command again, narrowed to the run's loss and seed (a student trains alike
alone and in a cohort) and pointed at a scratch results directory and cache, so a teacher or a
checkpoint of the original is never reused unless asked for, and nothing shared is written.

On the same hardware with the same library versions the reproduced row is identical; elsewhere
floating-point kernels differ, and the honest yardstick is the spread over seeds of the same recipe.
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.environment import LIBRARIES
from bench.store.results import read_runs
from bench.training.launch import without_option
from losses import LOSSES
from registry import ConfigError

METRICS = {"best_top1": "best top-1", "last_top1": "last top-1", "teacher_top1": "teacher top-1"}
SPREAD_METRICS = ("best_top1", "last_top1")  # the student's numbers; the teacher is one per comparison
# every number of a row that the training computes: equal on the same hardware and library versions
NUMBERS = ["best_top1", "best_top5", "best_epoch", "last_top1", "last_top5", "teacher_top1", "teacher_top5",
           "diverged", "curve"]
# numbers rows record since validation splits and collapse: compared where the stored row has them
LATER_NUMBERS = ["val_curve", "selected_epoch", "val_top1", "selected_top1", "selected_top5", "top_class_share",
                 "collapsed"]
ENVIRONMENT = ["device", "torch_version", "timm_version", *LIBRARIES, "python_version"]
REPLACED = ("--losses", "--seeds", "--results-dir", "--cache-dir", "--nproc")  # set by the reproduction
NOT_IN_RUN_ID = {"command", "run_id", "device", "torch_threads", "world_size", "per_rank_batch", "diagnostics"}


@dataclass(frozen=True)
class StoredRun:
    config: dict[str, Any]
    row: pd.Series  # the run's row of its runs.csv
    runs: pd.DataFrame  # every row of that runs.csv: the seeds of the same recipe give the spread

    @property
    def run_id(self) -> str:
        return self.config["run_id"]


def find_run(target: str, results_dir: Path) -> StoredRun:
    """``target`` is a run id of a runs.csv under ``results_dir``, or the path of a ``configs/<run_id>.json``."""
    path = Path(target)
    if path.suffix == ".json":
        if not path.is_file():
            raise ConfigError(f"no config file {path}; expected <results>/<dataset>/configs/<run_id>.json")
    else:
        found = sorted(Path(results_dir).glob(f"*/configs/{target}.json"))
        if not found:
            raise ConfigError(f"no run '{target}' in {results_dir}; expected a run_id of a runs.csv under it "
                              f"(or --results-dir DIR, or the path of a configs/<run_id>.json)")
        path = found[0]
    try:
        config = json.loads(path.read_text())
        run_id, command = config["run_id"], config["command"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a config written by bench run ({exc!r})") from None
    runs_csv = path.parent.parent / "runs.csv"
    if not runs_csv.is_file():
        raise ConfigError(f"{runs_csv} is missing, so the stored numbers of run {run_id} are unknown")
    runs = read_runs(runs_csv).table
    rows = runs[runs["run_id"] == run_id]
    if rows.empty:
        raise ConfigError(f"run {run_id} has a config but no row in {runs_csv} (it did not finish)")
    if shlex.split(command)[:2] != ["bench", "run"]:
        raise ConfigError(f"run {run_id} was made by '{command}'; only runs of bench run can be reproduced")
    return StoredRun(config, rows.iloc[0], runs)


def rerun_arguments(stored: StoredRun, results_dir: Path, cache_dir: Path, device: str | None) -> list[str]:
    """The stored ``bench run`` command for this run's loss and seed only, into ``results_dir``/``cache_dir``.

    ``device`` replaces the device of the original (its resolved ``auto``) when given.
    """
    config = stored.config
    args = shlex.split(config["command"])[2:]
    for option in REPLACED:
        args = without_option(args, option)
    loss = config["loss"]["name"]
    args = _settings_of(args, loss)
    extra = ["--losses", loss, "--seeds", str(config["seed"]), "--results-dir", str(results_dir),
             "--cache-dir", str(cache_dir)]
    world_size = config.get("world_size", 1)
    if world_size > 1:
        extra += ["--nproc", str(world_size)]  # each process picks its own GPU
    if "validation_size" not in config:  # trained on the whole training split, before validation splits existed
        args, extra = without_option(args, "--validation-size"), [*extra, "--validation-size", "0"]
    device = device or (config.get("device") if world_size == 1 else None)
    if device:
        args, extra = without_option(args, "--device"), [*extra, "--device", device]
    return ["run", *args, *extra]


def _settings_of(args: list[str], loss: str) -> list[str]:
    """``args`` less the ``--set OTHER.KEY=VALUE`` of the other losses of the original cohort."""
    kept, words = [], iter(args)
    for word in words:
        if word == "--set":
            value = next(words, "")
        elif word.startswith("--set="):
            value = word.removeprefix("--set=")
        else:
            kept.append(word)
            continue
        if _loss_named(value.partition(".")[0]) == loss:
            kept += ["--set", value]
    return kept


def _loss_named(name: str) -> str | None:
    try:
        return LOSSES.canonical(name)
    except ConfigError:  # a loss not installed here: it was not this run's loss
        return None


@dataclass(frozen=True)
class Line:
    """One number, stored and reproduced, and the spread over seeds of the same recipe (None: not a seed's number)."""

    label: str
    stored: float
    reproduced: float
    spread: float | None = None
    n_seeds: int = 0

    @property
    def difference(self) -> float:
        return self.reproduced - self.stored

    @property
    def verdict(self) -> str:
        if self.spread is None:
            return ""
        if self.n_seeds < 2:
            return "seed spread n/a (one seed)"
        inside = "inside" if abs(self.difference) <= self.spread else "outside"
        return f"{inside} the seed spread (std {self.spread:.2f} over {self.n_seeds} seeds)"


def compare(stored: StoredRun, reproduced: pd.Series) -> list[Line]:
    """Best and last top-1 against their spread over the stored seeds of the same recipe, then the teacher's."""
    recipe = stored.runs[(stored.runs["recipe_hash"] == stored.row["recipe_hash"]) & ~stored.runs["diverged"]]
    lines = []
    for metric, label in METRICS.items():
        spread = (float(recipe[metric].std()), len(recipe)) if metric in SPREAD_METRICS else (None, 0)
        lines.append(Line(label, float(stored.row[metric]), float(reproduced[metric]), *spread))
    return lines


def computed_numbers(stored: pd.Series) -> list[str]:
    """The columns of ``stored`` that training computes: ``NUMBERS``, and the later ones it has values for."""
    return NUMBERS + [column for column in LATER_NUMBERS if _text(stored[column]) != ""]


def differing(stored: pd.Series, reproduced: pd.Series, columns: list[str]) -> list[str]:
    """The columns whose values differ; an empty stored value (a row older than the column) counts as differing."""
    return [c for c in columns if _text(stored[c]) != _text(reproduced[c]) or _text(stored[c]) == ""]


def _text(value: Any) -> str:
    return "" if isinstance(value, float) and math.isnan(value) else str(value)


def changed_settings(stored: dict[str, Any], reproduced: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every resolved setting that differs (why a stored command now names another run)."""
    old, new = _flat(stored), _flat(reproduced)
    return [f"{key}: {old.get(key)} -> {new.get(key)}" for key in sorted(old.keys() | new.keys())
            if key.split(".")[0] not in NOT_IN_RUN_ID and old.get(key) != new.get(key)]


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat
