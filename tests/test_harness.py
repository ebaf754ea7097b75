"""The harness end to end on the synthetic dataset: cohort == sequential, resume, idempotence."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import bench.run.runner
from bench.store.results import COLUMNS
from helpers import interrupt_after_first_epoch, read_runs, synthetic_run

LOSSES = "vanilla,kd,fitnet"
NUMBERS = ["best_top1", "best_top5", "best_epoch", "last_top1", "last_top5", "curve", "teacher_top1"]


@pytest.fixture(scope="module")
def cohort_run(tmp_path_factory, teacher_cache):
    """One cohort run of three losses and two seeds, shared by the tests that only read it."""
    from bench.cli import main

    tmp = tmp_path_factory.mktemp("cohort")
    assert main(synthetic_run(tmp, teacher_cache, "--losses", LOSSES, "--seeds", "0,1")) == 0
    return tmp


def test_full_run_records_one_complete_row_per_loss_and_seed(cohort_run):
    runs = read_runs(cohort_run / "results")
    assert list(runs.columns) == COLUMNS
    assert sorted(zip(runs["loss"], runs["seed"])) == sorted((l, s) for l in LOSSES.split(",") for s in (0, 1))
    assert runs["run_id"].is_unique
    assert (runs.groupby("loss")["recipe_hash"].nunique() == 1).all()  # seeds of one experiment share it
    assert runs["provider"].eq("distillbench").all() and runs["device"].str.len().gt(0).all()
    assert runs["command"].str.startswith("bench run --dataset synthetic").all()
    for row in runs.itertuples():
        curve = json.loads(row.curve)
        assert len(curve) == row.epochs == 2
        assert row.best_top1 == max(curve) and row.last_top1 == curve[-1]
        config = json.loads((cohort_run / "results" / "synthetic" / "configs" / f"{row.run_id}.json").read_text())
        assert config["loss"]["name"] == row.loss and config["seed"] == row.seed
    assert runs["teacher_top1"].gt(25).all() and runs["teacher_top1"].le(100).all()


def test_same_seed_gives_same_student_init_and_batches(cohort_run):
    """Different seeds differ; the vanilla run is reproducible from its seed (checked via sequential below)."""
    runs = read_runs(cohort_run / "results")
    vanilla = runs[runs["loss"] == "vanilla"]
    assert vanilla["run_id"].nunique() == 2


def test_sequential_gives_the_same_numbers_as_the_cohort(cohort_run, tmp_path, teacher_cache, cli):
    assert cli(*synthetic_run(tmp_path, teacher_cache, "--losses", LOSSES, "--seeds", "0,1", "--sequential")).code == 0
    cohort, sequential = read_runs(cohort_run / "results"), read_runs(tmp_path / "results")
    pd.testing.assert_frame_equal(cohort[["loss", "seed", "run_id", *NUMBERS]],
                                  sequential[["loss", "seed", "run_id", *NUMBERS]])


def test_rerun_skips_finished_runs(cohort_run, teacher_cache, cli, monkeypatch):
    before = (cohort_run / "results" / "synthetic" / "runs.csv").read_text()
    monkeypatch.setattr(bench.run.runner, "train_cohort", lambda *a, **k: pytest.fail("finished work retrained"))
    result = cli(*synthetic_run(cohort_run, teacher_cache, "--losses", LOSSES, "--seeds", "0,1"))
    assert result.code == 0
    assert (cohort_run / "results" / "synthetic" / "runs.csv").read_text() == before


def test_interrupted_run_resumes_to_the_uninterrupted_result(cohort_run, tmp_path, teacher_cache, cli, monkeypatch):
    cache = tmp_path / "cache"  # own run checkpoints; the teacher is retrained identically
    let_finish = interrupt_after_first_epoch(monkeypatch, len(LOSSES.split(",")))
    args = synthetic_run(tmp_path, cache, "--losses", LOSSES, "--seeds", "0")
    assert cli(*args).code == 130
    assert not (tmp_path / "results" / "synthetic" / "runs.csv").exists()
    let_finish()
    assert cli(*args).code == 0
    resumed, uninterrupted = read_runs(tmp_path / "results"), read_runs(cohort_run / "results")
    uninterrupted = uninterrupted[uninterrupted["seed"] == 0].reset_index(drop=True)
    pd.testing.assert_frame_equal(resumed[["loss", "run_id", *NUMBERS]], uninterrupted[["loss", "run_id", *NUMBERS]])


def test_dataloader_path_trains_the_same_cohort(tmp_path, teacher_cache, cli):
    """The DataLoader path (torchvision transforms per image) runs the same runs end to end."""
    assert cli(*synthetic_run(tmp_path, teacher_cache, "--losses", "vanilla,kd", "--data-path", "loader",
                              "--workers", "0")).code == 0
    runs = read_runs(tmp_path / "results")
    assert runs["loss"].tolist() == ["kd", "vanilla"] and runs["best_top1"].between(0, 100).all()
