"""bench tune end to end on synthetic data: trial 0, resume, shared storage, the overlay, bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import optuna
import pandas as pd
import pytest

import bench.run.runner
from bench.data.synthetic import INFO
from bench.tune.search import objective

ROOT = Path(__file__).resolve().parents[1]
LOSSES = "kd,fitnet"


def tune_args(tmp: Path, cache: Path, *extra: str, trials: int = 2) -> list[str]:
    return ["tune", "--dataset", "synthetic", "--losses", LOSSES, "--trials", str(trials), "--epochs", "1",
            "--results-dir", tmp / "results", "--cache-dir", cache, "--device", "cpu", "--quiet", *extra]


@pytest.fixture(scope="module")
def searched(tmp_path_factory, teacher_cache) -> Path:
    """One finished search of kd and fitnet, 2 trials of 1 epoch; returns its directory (results/ inside)."""
    from bench.cli import main

    root = tmp_path_factory.mktemp("search")
    assert main([str(a) for a in tune_args(root, teacher_cache)]) == 0
    return root


def without_students(cache: Path, into: Path) -> Path:
    """A copy of ``cache`` with its teacher and none of its students' checkpoints."""
    shutil.copytree(cache, into, ignore=shutil.ignore_patterns("runs"))
    return into


def trials_of(results: Path) -> dict[tuple[str, int], tuple]:
    """(loss, round) -> (state, params, value) of every trial in the default storage of ``results``."""
    storage = f"sqlite:///{results / 'tuning' / 'synthetic' / 'study.db'}"
    found = {}
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        loss = study.user_attrs["search"]["loss"]
        for trial in study.get_trials():
            key = (loss, trial.user_attrs["round"])
            assert key not in found, f"trial {key} stored twice"
            found[key] = (trial.state.name, trial.params, trial.value)
    return found


def test_trial_0_is_the_recipe_and_the_overlay_holds_the_best(searched):
    trials = trials_of(searched / "results")
    assert trials[("kd", 0)][1] == {"weight": 0.9, "T": 4.0}  # RepDistiller's KD: alpha 0.9, T 4
    assert trials[("fitnet", 0)][1] == {"weight": 100.0}
    assert set(trials) == {(loss, r) for loss in ("kd", "fitnet") for r in range(2)}
    assert trials[("kd", 1)][1] != trials[("kd", 0)][1]
    overlay = tomllib.loads((searched / "results" / "synthetic" / "tuned.toml").read_text())
    [(search_id, search)] = overlay["searches"].items()
    assert (search["trials"], search["epochs"], search["seed"], search["sampler"]) == (2, 1, 0, "TPE")
    assert search["split"].startswith("validation: 64 training images")
    stored = pd.read_csv(searched / "results" / "tuning" / "synthetic" / "runs.csv", dtype={"val_curve": str})
    for loss in ("kd", "fitnet"):
        entry = overlay["losses"][loss]
        completed = {r: v for (name, r), (state, _, v) in trials.items() if name == loss and state == "COMPLETE"}
        assert entry["value"] == round(max(completed.values()), 2) and entry["search"] == search_id
        assert entry["settings"] == trials[(loss, entry["trial"])][1]
        scores = {round(objective(row, INFO.num_classes)[0], 2) for _, row in stored[stored["loss"] == loss].iterrows()}
        assert set(round(v, 2) for v in completed.values()) == scores  # each score is its row's validation top-1


def test_a_killed_search_resumes_to_the_same_trials(cli, searched, teacher_cache, tmp_path, monkeypatch):
    cache = without_students(teacher_cache, tmp_path / "cache")
    original, saves = bench.run.runner.checkpoint.save, []

    def save_then_stop(state, path):  # stop in round 1, once its first student's epoch is saved
        original(state, path)
        saves.append(path)
        if len(saves) == 3:  # round 0: 2 students x 1 epoch
            raise KeyboardInterrupt

    monkeypatch.setattr(bench.run.runner.checkpoint, "save", save_then_stop)
    assert cli(*tune_args(tmp_path, cache)).code == 130
    interrupted = trials_of(tmp_path / "results")
    assert {interrupted[(loss, 1)][0] for loss in ("kd", "fitnet")} == {"RUNNING"}
    assert not (tmp_path / "results" / "synthetic" / "tuned.toml").exists()
    monkeypatch.setattr(bench.run.runner.checkpoint, "save", original)
    assert cli(*tune_args(tmp_path, cache)).code == 0
    assert trials_of(tmp_path / "results") == trials_of(searched / "results")


def test_two_workers_on_one_storage_never_train_a_trial_twice(teacher_cache, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cache = without_students(teacher_cache, tmp_path / "cache")
    args = [sys.executable, "-m", "bench", *map(str, tune_args(tmp_path, cache, trials=3))]
    workers = [subprocess.Popen(args, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for worker in workers:
        assert worker.wait(timeout=1800) == 0, worker.stderr.read()
    trials = trials_of(tmp_path / "results")  # raises on a (loss, round) stored twice
    assert sorted(trials) == sorted((loss, r) for loss in ("kd", "fitnet") for r in range(3))
    assert all(state in ("COMPLETE", "PRUNED") for state, _, _ in trials.values())
    rows = pd.read_csv(tmp_path / "results" / "tuning" / "synthetic" / "runs.csv")
    assert rows["run_id"].is_unique and len(rows) == 6
    assert (tmp_path / "results" / "synthetic" / "tuned.toml").is_file()


def test_bench_run_tuned_applies_the_overlay_and_the_row_says_so(cli, searched, teacher_cache):
    overlay = tomllib.loads((searched / "results" / "synthetic" / "tuned.toml").read_text())
    run = ["run", "--dataset", "synthetic", "--losses", "kd", "--results-dir", searched / "results",
           "--cache-dir", teacher_cache, "--device", "cpu", "--quiet", "--epochs", "1", "--teacher-seed", "0"]
    assert cli(*run).code == 0 and cli(*run, "--tuned").code == 0
    rows = pd.read_csv(searched / "results" / "synthetic" / "runs.csv", dtype={"tuned": str})
    [search_id] = overlay["searches"]
    tuned, plain = rows[rows["tuned"] == search_id].iloc[0], rows[rows["tuned"].isna()].iloc[0]
    settings = overlay["losses"]["kd"]["settings"]
    assert tuned["weight"] == pytest.approx(settings["weight"]) and json.loads(tuned["hparams"])["T"] == pytest.approx(settings["T"])
    assert (plain["weight"], json.loads(plain["hparams"])["T"]) == (0.9, 4.0)
    assert tuned["run_id"] != plain["run_id"]
    configs = searched / "results" / "synthetic" / "configs"
    assert json.loads((configs / f"{tuned['run_id']}.json").read_text())["tuned"] == search_id


@pytest.mark.parametrize("row, expected", [
    ({"diverged": "False", "val_curve": "[40.0, 81.25]", "val_top1": 81.25}, (81.25, "finished")),
    ({"diverged": "True", "val_curve": "[40.0, NaN]", "val_top1": 40.0}, (0.0, "diverged")),
    ({"diverged": "False", "val_curve": "[60.0, 14.9]", "val_top1": 60.0}, (0.0, "collapsed")),  # ends at chance
    ({"diverged": "False", "val_curve": "[60.0, 15.1]", "val_top1": 60.0}, (60.0, "finished")),
])
def test_the_objective_is_validation_top1_and_the_worst_for_a_failed_trial(row, expected):
    assert objective(row, num_classes=10) == expected  # chance 10 %, collapsed below 1.5 x chance


def test_a_diverging_trial_is_recorded_not_fatal(cli, tmp_path, teacher_cache):
    cache = without_students(teacher_cache, tmp_path / "cache")
    result = cli(*tune_args(tmp_path, cache, "--losses", "kd", "--set", "kd.weight=1e30", trials=1))
    assert result.code == 0, result.err
    [(state, params, value)] = trials_of(tmp_path / "results").values()
    assert (state, value) == ("COMPLETE", 0.0)
    entry = tomllib.loads((tmp_path / "results" / "synthetic" / "tuned.toml").read_text())["losses"]["kd"]
    assert entry["status"] == "diverged" and entry["trials"]["diverged"] == 1


BAD = {
    "unknown loss": (["--losses", "kd,nope"], "unknown loss 'nope'; expected one of: "),
    "zero trials": (["--trials", "0"], "--trials must be a positive integer"),
    "string setting": (["--losses", "ot-emd", "--space", "ot-emd.cost={ search = [1, 2] }"], "only number settings are searched"),
    "space of an absent loss": (["--space", "dkd.beta={ search = [1.0, 9.0] }"], "--space names loss 'dkd', which is not in"),
    "not a number": (["--space", "kd.T={ search = [1, \"a\"] }"], "expected two finite numbers"),
    "integer setting": (["--space", "fitnet.stage={ search = [-2.5, 1.5] }"], "stage is an integer setting"),
    "outside the valid range": (["--space", "kd.T={ search = [-1.0, 8.0] }"], "leave its valid range (0, inf)"),
    "trial 0 left out": (["--space", "kd.T={ search = [5.0, 8.0] }"], "leave out the recipe's value 4.0"),
    "log through zero": (["--space", "kd.T={ search = [0.0, 8.0], log = true }"], "leave its valid range"),
    "unknown setting": (["--space", "kd.tau={ search = [1, 2] }"], "has no setting tau"),
    "unreachable storage": (["--storage", "postgresql://nobody:secret@127.0.0.1:1/none"], "cannot reach --storage"),
    "not a storage": (["--storage", "redis://localhost"], "is not a database URL"),
    "out-of-range --set": (["--set", "kd.T=-1"], "kd.T = -1 is outside its valid range (0, inf)"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_tune_input_is_one_line_and_writes_nothing(case, cli, tmp_path):
    args, message = BAD[case]
    result = cli(*tune_args(tmp_path, tmp_path / "cache", *args))
    assert result.code == 2 and message in result.err and result.err.count("\n") == 1, result.err
    assert "secret" not in result.err
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()


def test_run_tuned_without_an_overlay_is_one_line(cli, tmp_path):
    result = cli("run", "--dataset", "synthetic", "--losses", "kd", "--tuned", "--results-dir", tmp_path / "results",
                 "--cache-dir", tmp_path / "cache", "--device", "cpu")
    assert result.code == 2 and "tuned.toml does not exist" in result.err
    assert not (tmp_path / "results").exists()


def searched_spaces() -> dict[str, dict]:
    """Each loss's search space as settings.toml declares it, on Fashion-MNIST's recipe."""
    from bench.recipes.resolve import dataset_recipe, resolve_loss
    from bench.recipes.settings import declarations
    from bench.tune.space import search_space

    recipe = dataset_recipe("fashion-mnist")
    return {name: search_space(resolve_loss(name, recipe, {}), {}) for name in sorted(declarations())}


def searched_corners() -> list[tuple[str, str, float]]:
    """(loss, setting, bound) for both ends of every searched setting but the weights."""
    return [(name, key, bound) for name, space in searched_spaces().items() for key, dim in space.items()
            if key not in ("weight", "ce_weight") for bound in (dim.low, dim.high)]


@pytest.mark.parametrize("name, key, bound", searched_corners())
def test_every_corner_of_a_search_space_builds_the_loss_and_its_optimiser(name, key, bound):
    """A trial draws anywhere in its space: each end must give a loss, and a trainer, the loss accepts
    (dot's delta once reached past 1 - momentum, and the search stopped on its second round)."""
    from bench.conformance import SAME, models, subject, world_for
    from bench.recipes.resolve import dataset_recipe

    train = dataset_recipe("fashion-mnist")["train"]
    subj = subject(name, {key: bound})
    m = models(world_for(subj, SAME))
    loss = subj.cls(m.ctx, **subj.params)
    params = [p for p in [*m.student.parameters(), *loss.parameters()] if p.requires_grad]
    loss.build_optimizer(params, lr=train["lr"], momentum=train["momentum"], weight_decay=train["weight_decay"],
                         nesterov=train.get("nesterov", False))


@pytest.mark.parametrize("name", [name for name, space in searched_spaces().items() if "weight" in space])
def test_a_searched_weight_multiplies_a_term_that_trains(name):
    """A weight scales the loss's term; where that term is zero after ``prepare`` (AB, FSP), every trial of
    the weight trains the same student and the search spends its budget on copies of trial 0."""
    from bench.conformance import SAME, build, step_inputs, subject, value

    loss, m = build(subject(name), SAME)
    term = value(loss, *step_inputs(m, 0))
    assert term.requires_grad and float(term.detach().abs()) > 0
