"""The results store: ``<results>/<dataset>/runs.csv``, one row per finished run, never half-written.

Each row carries every setting that can change its number; the full resolved configuration is
stored beside it as ``configs/<run_id>.json`` so the number can be regenerated. Files are replaced
atomically (write a temporary file, then ``os.replace``), so an interrupted write leaves the old
file intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

COLUMNS = [
    "run_id", "recipe_hash", "dataset", "pair", "teacher", "student", "loss", "provider", "provider_version",
    "seed", "protocol", "stem", "epochs", "batch_size", "lr", "weight", "ce_weight", "hparams",
    "best_top1", "best_top5", "best_epoch", "last_top1", "last_top5", "teacher_top1", "teacher_top5",
    "diverged", "curve", "wall_s", "s_per_epoch", "loss_ms", "device", "torch_version", "timm_version",
    "distillbench_version", "finished_at", "command",
]


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


class ResultsStore:
    """The runs of one dataset under a results directory."""

    def __init__(self, root: Path, dataset: str):
        self.directory = Path(root) / dataset
        self.runs_csv = self.directory / "runs.csv"
        self.configs = self.directory / "configs"

    def runs(self) -> pd.DataFrame:
        if not self.runs_csv.is_file():
            return pd.DataFrame(columns=COLUMNS)
        return pd.read_csv(self.runs_csv, dtype={"run_id": str, "recipe_hash": str})

    def finished_ids(self) -> set[str]:
        return set(self.runs()["run_id"].astype(str))

    def append(self, row: Mapping[str, Any], config: Mapping[str, Any]) -> None:
        """Store the config, then the row: a row never exists without the config that made it."""
        missing = set(COLUMNS) - set(row)
        if missing:
            raise ValueError(f"result row lacks {sorted(missing)}")
        atomic_write_text(self.configs / f"{row['run_id']}.json", json.dumps(config, indent=2, sort_keys=True, default=str))
        new = pd.DataFrame([row], columns=COLUMNS)
        old = self.runs()
        table = pd.concat([old, new], ignore_index=True) if len(old) else new
        atomic_write_text(self.runs_csv, table.to_csv(index=False))
