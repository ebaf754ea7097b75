"""Live curves: TensorBoard event files and Weights & Biases (a stand-in ``wandb`` module, no network)
carry each run's epochs as recorded in runs.csv; ``--wandb`` without wandb is refused before any work."""

from __future__ import annotations

import json
import sys
import types

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import read_runs, synthetic_run


class FakeRun:
    def __init__(self, **kwargs):
        self.init, self.logged, self.finished = kwargs, [], False

    def log(self, scalars, step):
        self.logged.append((step, scalars))

    def finish(self):
        self.finished = True


@pytest.fixture
def fake_wandb(monkeypatch):
    runs: list[FakeRun] = []
    module = types.ModuleType("wandb")
    module.init = lambda **kwargs: runs.append(FakeRun(**kwargs)) or runs[-1]
    monkeypatch.setitem(sys.modules, "wandb", module)
    return runs


def test_each_run_has_its_curves_in_tensorboard_and_wandb(tmp_path, cli, fake_wandb, monkeypatch):
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    done = cli(*synthetic_run(tmp_path, tmp_path / "cache", "--losses", "kd,vanilla",
                              "--tensorboard", "--wandb", "--wandb-project", "kd-study"))
    assert done.code == 0, done.err
    rows = read_runs(tmp_path / "results")
    assert sorted(run.init["id"] for run in fake_wandb) == sorted(rows["run_id"])
    for row in rows.itertuples():
        curve = json.loads(row.curve)
        [run] = [run for run in fake_wandb if run.init["id"] == row.run_id]
        assert run.init["project"] == "kd-study" and run.init["config"]["loss"]["name"] == row.loss
        assert [step for step, _ in run.logged] == list(range(1, len(curve) + 1)) and run.finished
        assert [round(scalars["test/top1"], 2) for _, scalars in run.logged] == curve
        assert {"lr", "images_per_s", "train/ce", "train/objective"} <= set(run.logged[0][1])
        events = EventAccumulator(str(tmp_path / "results" / "synthetic" / "tensorboard" / row.run_id))
        events.Reload()
        assert [round(e.value, 2) for e in events.Scalars("test/top1")] == curve
        assert [e.step for e in events.Scalars("lr")] == list(range(1, len(curve) + 1))


def test_the_project_comes_from_the_environment_without_the_option(tmp_path, cli, fake_wandb, monkeypatch):
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    assert cli(*synthetic_run(tmp_path, tmp_path / "cache", "--losses", "vanilla", "--epochs", "1", "--wandb")).code == 0
    assert [run.init["project"] for run in fake_wandb] == ["from-env"]


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_wandb_without_the_package_is_one_line_before_any_work(tmp_path, cli, monkeypatch, command):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    args = synthetic_run(tmp_path, tmp_path / "cache", "--wandb")
    result = cli(command, *args[1:]) if command == "run" else cli(
        "sweep", "--dataset", "synthetic", "--pairs", "all", "--results-dir", tmp_path / "results", "--wandb")
    assert result.code == 2 and result.err == ("error: --wandb needs the wandb package, which is not installed; "
                                               "expected 'pip install wandb' first, or no --wandb\n")
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()
