"""--teacher-seed: one teacher for every seed of a comparison, recorded in the row and the run id."""

from __future__ import annotations

import json

import pytest

from bench.recipes.resolve import dataset_recipe, resolve_train
from bench.run.runner import RunRequest, _teacher_seed
from bench.training.teacher import TeacherPlan
from registry import ConfigError
from helpers import read_runs, synthetic_run


def test_every_seed_shares_the_teacher_of_the_teacher_seed(tmp_path, teacher_cache, cli):
    shared = cli(*synthetic_run(tmp_path / "shared", teacher_cache, "--losses", "kd", "--seeds", "0,1",
                                "--teacher-seed", "1"))
    own = cli(*synthetic_run(tmp_path / "own", teacher_cache, "--losses", "kd", "--seeds", "0,1"))
    assert shared.code == own.code == 0
    shared_runs, own_runs = read_runs(tmp_path / "shared" / "results"), read_runs(tmp_path / "own" / "results")
    assert shared_runs["teacher_seed"].tolist() == [1, 1]
    assert own_runs["teacher_seed"].tolist() == [0, 1]
    # seed 1 trains with the same teacher either way; seed 0 gets seed 1's teacher only when shared
    assert shared_runs["teacher_top1"].nunique() == 1
    assert shared_runs["teacher_top1"].iloc[0] == own_runs["teacher_top1"].iloc[1]
    # the row names the teacher's weights: one fingerprint when shared, one per seed's own teacher otherwise
    assert shared_runs["teacher_fingerprint"].nunique() == 1 and own_runs["teacher_fingerprint"].nunique() == 2
    assert shared_runs["teacher_fingerprint"].iloc[0] == own_runs["teacher_fingerprint"].iloc[1]
    assert set(shared_runs["run_id"]).isdisjoint(own_runs["run_id"])
    config = json.loads((tmp_path / "shared" / "results" / "synthetic" / "configs"
                         / f"{shared_runs['run_id'].iloc[0]}.json").read_text())
    assert config["teacher_seed"] == 1


def test_a_protocol_trains_its_teacher_on_its_own_schedule():
    recipe = dataset_recipe("fashion-mnist")
    student = resolve_train(recipe, "converged", "resnet8", {})
    teacher = resolve_train(recipe, "converged", None, {})
    assert (student.epochs, student.schedule) == (1, "cosine")
    assert (teacher.epochs, teacher.milestones, teacher.schedule) == (10, (5, 8), "step")
    assert resolve_train(recipe, "fast", None, {}).epochs == 1  # other protocols keep the shared [teacher]


def test_teacher_seed_needs_a_teacher_trained_here():
    plan = TeacherPlan("resnet14", "checkpoint:0123456789abcdef")
    with pytest.raises(ConfigError, match="--teacher-seed applies to a teacher trained here"):
        _teacher_seed(RunRequest(teacher_seed=0), plan)
    assert _teacher_seed(RunRequest(), plan) is None
