"""Helpers shared by test modules (importable because pytest puts tests/ on the path)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def synthetic_run(tmp: Path, cache: Path, *extra: str) -> list[str]:
    return ["run", "--dataset", "synthetic", "--results-dir", tmp / "results", "--cache-dir", cache,
            "--device", "cpu", "--quiet", *extra]


def read_runs(results: Path, dataset: str = "synthetic") -> pd.DataFrame:
    return pd.read_csv(results / dataset / "runs.csv").sort_values(["loss", "seed"]).reset_index(drop=True)
