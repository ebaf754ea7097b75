"""A runs.csv writer for the report tests: a test states the numbers it checks, the schema is filled in."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from bench.store.results import COLUMNS


def make_run(loss: str, seed: int, best: float, last: float | None = None, *, pair: str = "resnet32x4-resnet8x4",
             dataset: str = "toy", protocol: str = "standard", epochs: int = 3, diverged: bool = False,
             **fields) -> dict:
    """One finished run as the harness writes it; a diverged run keeps its pre-divergence best, like the harness."""
    last = math.nan if diverged else (best - 0.5 if last is None else last)
    recipe = f"{dataset}-{pair}-{loss}-{protocol}-{epochs}"
    teacher, student = pair.split("-", 1)
    row = {
        "run_id": f"{recipe}-s{seed}", "recipe_hash": recipe, "dataset": dataset, "pair": pair,
        "teacher": teacher, "student": student, "loss": loss, "provider": "distillbench", "provider_version": "0.1.0",
        "seed": seed, "teacher_seed": 0, "protocol": protocol, "stem": "cifar", "epochs": epochs, "batch_size": 64, "lr": 0.05,
        "weight": 1.0, "ce_weight": 1.0, "hparams": "{}", "best_top1": best, "best_top5": best + 20, "best_epoch": 2,
        "last_top1": last, "last_top5": last + 20, "teacher_top1": 79.42, "teacher_top5": 95.0, "diverged": diverged,
        "curve": json.dumps([best - 2, best, last]), "wall_s": 30.0, "s_per_epoch": 10.0,
        "loss_ms": None if loss == "vanilla" else 1.5, "device": "NVIDIA H100 80GB HBM3", "torch_version": "2.4.1",
        "timm_version": "1.0.9", "distillbench_version": "0.1.0", "finished_at": f"2025-01-01T00:00:{seed:02d}+00:00",
        "command": f"bench run --dataset {dataset} --seeds 0,1,2", "teacher_fingerprint": "",  # a row from before it
        "tuned": "",  # the recipe's settings, not a search's
    }
    # no validation split, collapse not recorded: rows as written before those columns existed
    row |= dict.fromkeys(["val_size", "val_curve", "selected_epoch", "val_top1", "selected_top1", "selected_top5",
                          "top_class_share", "collapsed", "collapse_reason"])
    unread = dict.fromkeys(set(COLUMNS) - set(row), "0")  # columns the report never reads (versions ...): any value
    return {**unread, **row, **fields}


@pytest.fixture(scope="session")
def run_row():
    """``run_row(loss, seed, best, ...)``: one row of runs.csv (see ``make_run``)."""
    return make_run


@pytest.fixture(scope="session")
def write_runs(tmp_path_factory):
    """``write_runs(rows)`` writes <fresh dir>/<dataset>/runs.csv for each dataset in the rows, returns <fresh dir>."""

    def write(rows: list[dict]):
        root = tmp_path_factory.mktemp("results")
        for dataset, frame in pd.DataFrame(rows, columns=COLUMNS).groupby("dataset"):
            (root / dataset).mkdir()
            frame.to_csv(root / dataset / "runs.csv", index=False)
        return root

    return write
