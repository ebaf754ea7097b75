"""The sweep planner: grid -> one cohort per pair and seed, finished runs left out (as bench run would),
and bad input refused in one line before anything is written."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import bench
from bench.sweep.plan import Grid, RunOptions, parse_pairs, plan_sweep
from helpers import read_runs, synthetic_run
from registry import ConfigError

CATALOG = tomllib.loads((Path(bench.__file__).parent / "recipes" / "pairs.toml").read_text())
PAIRS = tuple(name for name, entry in CATALOG.items() if entry["dataset"] == "synthetic")


def grid(tmp_path: Path, pairs=PAIRS, losses="vanilla,kd", seeds=(0, 1, 2), **options) -> Grid:
    return Grid("synthetic", pairs, losses, seeds, tmp_path / "results", RunOptions(cache_dir=tmp_path / "cache", **options))


def test_all_means_every_catalog_pair_meant_for_the_dataset():
    assert len(PAIRS) >= 2
    assert parse_pairs("all", "synthetic") == PAIRS
    assert parse_pairs(f"{PAIRS[1]}, {PAIRS[0]}", "synthetic") == (PAIRS[1], PAIRS[0])


def test_the_grid_is_one_cohort_per_pair_and_seed_and_planning_writes_nothing(tmp_path):
    todo, finished = plan_sweep(grid(tmp_path))
    assert [(c.pair, c.seed) for c in todo] == [(p, s) for p in PAIRS for s in (0, 1, 2)] and not finished
    ids = [run_id for cohort in todo for run_id in cohort.run_ids]
    assert all(len(cohort.run_ids) == 2 for cohort in todo) and len(set(ids)) == len(ids)
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()


def test_what_bench_run_recorded_is_skipped(tmp_path, cli):
    assert cli(*synthetic_run(tmp_path, tmp_path / "cache", "--pair", PAIRS[0], "--losses", "kd", "--seeds", "1",
                              "--epochs", "1")).code == 0
    recorded = set(read_runs(tmp_path / "results")["run_id"])
    todo, finished = plan_sweep(grid(tmp_path, PAIRS[:1], "kd", (0, 1), epochs=1))
    assert [c.seed for c in finished] == [1] and [c.seed for c in todo] == [0]
    assert not set(todo[0].run_ids) & recorded
    todo, finished = plan_sweep(grid(tmp_path, PAIRS[:1], "kd,vanilla", (1,), epochs=1))  # one loss of the cohort is new
    assert not finished and len(todo[0].run_ids) == 1 and not set(todo[0].run_ids) & recorded
    todo, _ = plan_sweep(grid(tmp_path, PAIRS[:1], "kd", (1,), epochs=2))  # another schedule: other runs
    assert len(todo) == 1


def test_a_strong_view_sweep_plans_other_runs_and_passes_the_flag_on(tmp_path):
    plain, _ = plan_sweep(grid(tmp_path, PAIRS[:1], "kd", (0,)))
    viewed, _ = plan_sweep(grid(tmp_path, PAIRS[:1], "kd", (0,), strong_view=True))
    assert not set(plain[0].run_ids) & set(viewed[0].run_ids)
    assert "--strong-view" in RunOptions(strong_view=True).argv() and "--strong-view" not in RunOptions().argv()


def test_a_global_batch_that_does_not_split_over_the_jobs_processes_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="expected a multiple of 3"):
        plan_sweep(grid(tmp_path), world_size=3)


@pytest.mark.parametrize("args, message", [
    (["--pairs", "no-such-pair"], "unknown pair 'no-such-pair'; expected 'all' or some of: test_resnet"),
    (["--pairs", "all", "--dataset", "no-such-data"], "no recipe for dataset 'no-such-data'"),
    (["--losses", "kd,no-such-loss"], "no-such-loss"),
    (["--seeds", "0,x"], "--seeds expects comma-separated integers"),
    (["--gpus-per-node", "3"], "batch size 32 does not split over 3 processes"),
    (["--launcher", "ray"], "unknown launcher 'ray'; expected one of: local, slurm"),
    (["--launcher", "local", "--nodes", "2"], "--launcher local runs on this machine; expected --nodes 1"),
    (["--sbatch", "qos"], "--sbatch expects KEY=VALUE"),
])
def test_bad_input_is_one_line_and_exit_2_with_nothing_written(tmp_path, cli, args, message):
    result = cli("sweep", "--dataset", "synthetic", "--pairs", PAIRS[0], "--results-dir", tmp_path / "results",
                 "--cache-dir", tmp_path / "cache", *args)
    assert result.code == 2 and result.err.startswith("error: ") and result.err.count("\n") == 1, result.err
    assert message in result.err
    assert not (tmp_path / "results").exists()


def test_slurm_without_sbatch_is_refused(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = cli("sweep", "--dataset", "synthetic", "--pairs", PAIRS[0], "--launcher", "slurm",
                 "--results-dir", tmp_path / "results", "--cache-dir", tmp_path / "cache")
    assert result.code == 2 and result.err == ("error: --launcher slurm needs SLURM's sbatch and srun on the PATH, "
                                               "and there is none here; expected a SLURM login node, or --launcher local\n")
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("toml, message", [
    ("partition = 3", "SLURM setting partition = 3: expected a str"),
    ("gpu = 4", "unknown SLURM setting 'gpu'; expected one of: partition, account, nodes, gpus_per_node"),
    ("nodes = [", "cannot read --slurm-config"),
])
def test_a_bad_slurm_config_is_refused(tmp_path, cli, toml, message):
    config = tmp_path / "slurm.toml"
    config.write_text(toml + "\n")
    result = cli("sweep", "--dataset", "synthetic", "--pairs", PAIRS[0], "--slurm-config", config,
                 "--results-dir", tmp_path / "results")
    assert result.code == 2 and message in result.err and result.err.count("\n") == 1, result.err
    assert not (tmp_path / "results").exists()
