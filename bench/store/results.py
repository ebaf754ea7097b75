"""The results store: ``<results>/<dataset>/runs.csv``, one row per finished run, never half-written.

Each row carries every setting that can change its number; the full resolved configuration is
stored beside it as ``configs/<run_id>.json`` so the number can be regenerated. Files are replaced
atomically (a temporary file of a unique name in the same directory, then ``os.replace``), so an
interrupted write leaves the old file intact. Many processes may share one store: every append is
a read-modify-write under a file lock, and a run being trained is claimed by a lock of its own.

Nothing read is trusted blindly: a row missing a required value (a file cut short, edited by hand)
is not finished, is reported with its line number, and is never written back.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
from filelock import FileLock

from bench.store.aside import copy_aside
from bench.console.notices import warn
from bench.console.wording import plural
from registry import ConfigError

COLUMNS = [
    "run_id", "recipe_hash", "dataset", "pair", "teacher", "student", "loss", "provider", "provider_version",
    "seed", "teacher_seed", "protocol", "strong_view", "tuned", "stem", "epochs", "batch_size", "lr", "clip_grad", "weight",
    "ce_weight", "hparams",
    "best_top1", "best_top5", "best_epoch", "last_top1", "last_top5",
    "val_size", "val_curve", "selected_epoch", "val_top1", "selected_top1", "selected_top5", "teacher_top1", "teacher_top5",
    "teacher_fingerprint", "diverged", "top_class_share", "collapsed", "collapse_reason", "curve", "wall_s", "s_per_epoch", "loss_ms", "device", "torch_version", "timm_version",
    "numpy_version", "pot_version", "python_version", "distillbench_version", "finished_at", "command",
]
# Empty in the rows of a file written before the column existed (and kept empty when rewritten).
# The validation columns (bench.data.validation) are also empty in the rows of runs without a validation split.
VALIDATION = {"val_size", "val_curve", "selected_epoch", "val_top1", "selected_top1", "selected_top5"}
# bench.store.collapse: a row from before has no prediction share and is classified on read (bench.report.runs).
COLLAPSE = {"top_class_share", "collapsed", "collapse_reason"}
# tuned: the bench tune search whose settings a run applied (bench run --tuned); empty for a recipe's settings.
ADDED_LATER = {"teacher_seed", "strong_view", "tuned", "clip_grad", "numpy_version", "pot_version", "python_version",
               "teacher_fingerprint", *VALIDATION, *COLLAPSE}
SCORES = {"best_top1", "best_top5", "best_epoch", "last_top1", "last_top5", "loss_ms"}  # none: diverged, no loss term
NO_VALUE_ALLOWED = SCORES | ADDED_LATER
NUMBERS = {"seed", "teacher_seed", "epochs", "batch_size", "lr", "clip_grad", "weight", "ce_weight", "teacher_top1", "teacher_top5",
           "wall_s", "s_per_epoch", "top_class_share", *SCORES, *VALIDATION - {"val_curve"}}
JSON_VALUES = {"hparams", "curve", "val_curve"}
TEXT = {"run_id", "recipe_hash", "dataset", "pair", "teacher", "student", "loss", "provider", "provider_version",
        "teacher_fingerprint",
        "protocol", "tuned", "stem", "hparams", "curve", "val_curve", "collapse_reason", "device", "torch_version", "timm_version", "numpy_version",
        "pot_version", "python_version", "distillbench_version", "finished_at", "command"}


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def check_writable_directory(path: Path, option: str) -> None:
    """Refuse, before any work, a directory that cannot be created or written (a file, read-only)."""
    path = Path(path).expanduser()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"{option} {path}: {existing} is a file; expected a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path}: {existing} is not writable; expected a writable directory")


@dataclass
class Runs:
    """What a runs.csv holds: the rows that passed validation (with their line numbers) and the damage."""

    path: Path
    rows: list[tuple[int, list[str]]]
    damaged: list[str]  # "line N: why", one per row not trusted

    @property
    def table(self) -> pd.DataFrame:
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows([COLUMNS, *(values for _, values in self.rows)])
        text.seek(0)
        return pd.read_csv(text, dtype=dict.fromkeys(TEXT, str))

    @property
    def run_ids(self) -> set[str]:
        return {values[0] for _, values in self.rows}

    def warn_damage(self) -> None:
        """One line per row not trusted."""
        for problem in self.damaged:
            warn(f"{self.path} {problem}: not counted as finished, left out of reports")

    def missing_configs(self) -> list[str]:
        configs = self.path.parent / "configs"
        return [f"line {line}: {configs / values[0]}.json is missing" for line, values in self.rows
                if not (configs / f"{values[0]}.json").is_file()]


def read_runs(path: Path) -> Runs:
    """Read and validate ``path``; a file that is not a runs.csv at all is a one-line ``ConfigError``."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path} ({exc}); move it aside to start a new results file") from None
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        header = next(reader, None)
    except csv.Error:
        header = None
    if not header or header[0] != "run_id" or set(header) - set(COLUMNS):
        raise ConfigError(f"{path} is not a runs.csv of bench run (its first line is not the expected header); "
                          f"move it aside to start a new results file")
    rows, damaged, line = [], [], 2
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            damaged.append(f"line {line}: unreadable ({exc})")
        else:
            problem = row_problem(header, values)
            if problem:
                damaged.append(f"line {line}: {problem}")
            else:  # a column newer than the file reads as empty
                rows.append((line, [dict(zip(header, values)).get(column, "") for column in COLUMNS]))
        line = reader.line_num + 1
    return Runs(path, rows, damaged)


def row_problem(header: list[str], values: list[str]) -> str | None:
    """Why a row of runs.csv (under ``header``) cannot be trusted as a finished run, or None."""
    if len(values) != len(header):
        return f"{len(values)} of {len(header)} values (cut short?)"
    row = dict.fromkeys(COLUMNS, "") | dict(zip(header, values))
    empty = [c for c in header if not row[c] and c not in NO_VALUE_ALLOWED]
    if empty:
        return f"no value for {', '.join(empty)}"
    for column in NUMBERS:
        try:
            if row[column] and math.isinf(float(row[column])):
                return f"{column} is {row[column]}"
        except ValueError:
            return f"{column} is not a number ({row[column]!r})"
    try:
        for column in JSON_VALUES:
            if row[column] or column not in NO_VALUE_ALLOWED:
                json.loads(row[column])
        datetime.fromisoformat(row["finished_at"])
    except (ValueError, TypeError) as exc:
        return f"unreadable value ({exc})"
    for column in ("diverged", "collapsed"):
        if row[column] not in ("True", "False") and (row[column] or column not in NO_VALUE_ALLOWED):
            return f"{column} is {row[column]!r}, expected True or False"
    return None


class ResultsStore:
    """The runs of one dataset under a results directory."""

    def __init__(self, root: Path, dataset: str):
        self.directory = Path(root) / dataset
        self.runs_csv = self.directory / "runs.csv"
        self.configs = self.directory / "configs"

    def read(self) -> Runs:
        if not self.runs_csv.is_file():
            return Runs(self.runs_csv, [], [])
        return read_runs(self.runs_csv)

    def runs(self) -> pd.DataFrame:
        return self.read().table

    def finished_ids(self) -> set[str]:
        return self.read().run_ids

    def report_damage(self) -> None:
        """One line per row not trusted, and per row whose stored config is gone."""
        runs = self.read()
        runs.warn_damage()
        for problem in runs.missing_configs():
            warn(f"{self.runs_csv} {problem}: the row is kept, but it cannot be regenerated from its config")

    def lock(self) -> FileLock:
        """Held around every read-modify-write of runs.csv."""
        self.directory.mkdir(parents=True, exist_ok=True)
        return FileLock(self.directory / ".runs.lock")

    def claim(self, run_id: str) -> FileLock:
        """Held by the process training ``run_id``, so a second process never trains it too."""
        claims = self.directory / ".claims"
        claims.mkdir(parents=True, exist_ok=True)
        return FileLock(claims / f"{run_id}.lock")

    def append(self, row: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
        """Store the config, then the row: a row never exists without the config that made it.

        Returns False, writing nothing, when the run is recorded already. Damaged rows are not
        written back; the file that held them is kept under a dated name of its own (``bench.store.aside``).
        """
        missing = set(COLUMNS) - set(row)
        if missing:
            raise ValueError(f"result row lacks {sorted(missing)}")
        with self.lock():
            current = self.read()
            if row["run_id"] in current.run_ids:
                return False
            atomic_write_text(self.configs / f"{row['run_id']}.json",
                              json.dumps(config, indent=2, sort_keys=True, default=str))
            if current.damaged:
                kept = copy_aside(self.runs_csv)
                warn(f"{self.runs_csv} held {plural(len(current.damaged), 'damaged row')}: the file as it was is kept as "
                     f"{kept}, the damaged rows are dropped")
            text = io.StringIO()
            csv.writer(text, lineterminator="\n").writerows([COLUMNS, *(values for _, values in current.rows)])
            text.write(pd.DataFrame([row], columns=COLUMNS).to_csv(index=False, header=False))
            atomic_write_text(self.runs_csv, text.getvalue())
        return True
