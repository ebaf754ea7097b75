"""bench sweep --tune: workers of one search as submitit jobs, validated before any job starts."""

from __future__ import annotations

import shutil
import tomllib

import optuna
import pytest

from bench.sweep.plan import Grid, RunOptions
from bench.sweep.tune import tune_argv

PAIR = "test_resnet-test_resnet"


@pytest.fixture(autouse=True)
def one_thread_per_job(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the jobs' processes inherit it


def test_a_worker_runs_bench_tune_with_the_sweeps_options(tmp_path):
    grid = Grid("synthetic", (PAIR,), "kd,vanilla", (3,), tmp_path / "results",
                RunOptions(epochs=1, cache_dir=tmp_path / "cache", teacher_seed=0, settings=("kd.T=2",)))
    argv = tune_argv(grid, PAIR, 5, "sqlite:///x.db", 1000)
    assert argv[:10] == ["tune", "--dataset", "synthetic", "--pair", PAIR, "--losses", "kd,vanilla", "--trials", "5",
                         "--results-dir"]
    for option, value in (("--epochs", "1"), ("--teacher-seed", "0"), ("--set", "kd.T=2"), ("--seed", "3"),
                          ("--storage", "sqlite:///x.db"), ("--train-size", "1000")):
        assert argv[argv.index(option) + 1] == value


def test_sweep_tune_refuses_what_a_search_cannot_take(cli, tmp_path):
    args = ["sweep", "--tune", "--dataset", "synthetic", "--pairs", PAIR, "--losses", "kd", "--results-dir",
            tmp_path / "results", "--cache-dir", tmp_path / "cache", "--device", "cpu"]
    several = cli(*args, "--seeds", "0,1")
    assert several.code == 2 and "--tune searches with one seed" in several.err and several.err.count("\n") == 1
    unreachable = cli(*args, "--seeds", "0", "--storage", "postgresql://nobody@127.0.0.1:1/none")
    assert unreachable.code == 2 and "cannot reach --storage" in unreachable.err
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()


def test_local_workers_share_one_search(cli, tmp_path, teacher_cache):
    cache = shutil.copytree(teacher_cache, tmp_path / "cache", ignore=shutil.ignore_patterns("runs"))
    result = cli("sweep", "--tune", "--workers", "2", "--trials", "1", "--dataset", "synthetic", "--pairs", PAIR,
                 "--losses", "vanilla", "--seeds", "0", "--epochs", "1", "--teacher-seed", "0", "--results-dir",
                 tmp_path / "results", "--cache-dir", cache, "--device", "cpu")
    assert result.code == 0, result.err
    assert result.out.count("tuning worker job") == 2
    storage = f"sqlite:///{tmp_path / 'results' / 'tuning' / 'synthetic' / 'study.db'}"
    [summary] = optuna.get_all_study_summaries(storage)
    assert summary.n_trials == 1  # two workers, one trial
    overlay = tomllib.loads((tmp_path / "results" / "synthetic" / "tuned.toml").read_text())
    assert overlay["losses"]["vanilla"]["settings"] == {}
