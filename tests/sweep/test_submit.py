"""Cohorts as submitit jobs: end to end through the local executor on the synthetic dataset, a
preempted job requeued and resumed from its epoch checkpoints, ``--status``, and the sbatch script."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import submitit
from submitit.core.utils import DelayedSubmission

import bench.run.runner
from bench.sweep.jobs import JobBook, JobEntry
from bench.sweep.plan import Cohort, Grid, RunOptions, plan_sweep
from bench.sweep.submit import CohortJob
from helpers import read_runs

PAIR = "test_resnet-test_resnet"


@pytest.fixture(autouse=True)
def one_thread_per_job(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the jobs' processes inherit it


def sweep_args(tmp_path: Path, *extra) -> list:
    return ["sweep", "--dataset", "synthetic", "--pairs", PAIR, "--results-dir", tmp_path / "results",
            "--cache-dir", tmp_path / "cache", "--device", "cpu", "--epochs", "1", "--teacher-seed", "0", *extra]


def test_a_local_sweep_trains_each_cohort_once_and_a_rerun_skips_them(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # the status table's cells on one line each, however long a log line
    done = cli(*sweep_args(tmp_path, "--losses", "kd,vanilla", "--seeds", "0,1"))
    assert done.code == 0, done.err
    assert done.out.splitlines()[-1].startswith("2 cohorts submitted (2 finished now), 0 finished before, 0 already")
    book = JobBook(tmp_path / "results")
    entries = book.entries()
    assert [(e.cohort.pair, e.cohort.seed, e.launcher) for e in entries] == [(PAIR, 0, "local"), (PAIR, 1, "local")]
    runs = read_runs(tmp_path / "results")
    assert sorted(runs["run_id"]) == sorted(i for e in entries for i in e.cohort.run_ids) and runs["run_id"].is_unique
    assert runs["command"].str.startswith(f"bench run --dataset synthetic --pair {PAIR} --seeds").all()

    logs = sorted(p.name for p in book.logs.iterdir())
    again = cli(*sweep_args(tmp_path, "--losses", "kd,vanilla", "--seeds", "0,1"))
    assert again.code == 0 and again.out.count("finished, skipped") == 2 and again.out.splitlines()[-1].startswith(
        "0 cohorts submitted, 2 finished before")
    assert sorted(p.name for p in book.logs.iterdir()) == logs  # no job started

    status = cli("sweep", "--status", "--results-dir", tmp_path / "results")
    assert status.code == 0 and status.out.count(" finished ") == 2 and "0 pending, 0 running, 2 finished, 0 failed" in status.out
    rows = [line.split("│") for line in status.out.splitlines() if PAIR in line]
    assert len(rows) == 2 and all("students trained" in row[-2] for row in rows), status.out  # each job's last line


def test_status_shows_pending_running_and_failed_with_the_logs_last_line(tmp_path, cli, monkeypatch):
    """A job that failed (bench run refused its input), one still running, one not yet submitted."""
    monkeypatch.setenv("COLUMNS", "200")  # the status table's cells on one line each, however long a log line
    results = tmp_path / "results"
    book = JobBook(results)
    executor = submitit.AutoExecutor(folder=book.logs, cluster="local")
    failing = executor.submit(CohortJob(["run", "--dataset", "synthetic", "--losses", "no-such-loss",
                                         "--results-dir", str(results)]))
    failing.wait()
    book.record(JobEntry(Cohort("synthetic", PAIR, 0, ("a",)), "local", str(failing.job_id)),
                JobEntry(Cohort("synthetic", PAIR, 1, ("b",)), "local", str(os.getpid())),  # a live process
                JobEntry(Cohort("synthetic", PAIR, 2, ("c",)), "local"))
    status = cli("sweep", "--status", "--results-dir", results)
    assert status.code == 0, status.err
    rows = {line.split("│")[1].strip(): line for line in status.out.splitlines() if PAIR in line}
    assert "failed" in rows[f"synthetic/{PAIR}/seed 0"] and "error: unknown loss" in rows[f"synthetic/{PAIR}/seed 0"]
    assert "running" in rows[f"synthetic/{PAIR}/seed 1"] and "pending" in rows[f"synthetic/{PAIR}/seed 2"]
    assert "1 pending, 1 running, 0 finished, 1 failed" in status.out


def test_status_of_a_results_dir_without_a_sweep_is_one_line(tmp_path, cli):
    result = cli("sweep", "--status", "--results-dir", tmp_path)
    assert result.code == 2 and result.err.startswith("error: no sweep recorded in") and result.err.count("\n") == 1


def test_a_preempted_cohort_is_requeued_and_resumes_from_its_epoch_checkpoints(tmp_path, monkeypatch):
    """Stopped after epoch 1 of 2; submitit's checkpoint() resubmits the same cohort, which trains epoch 2
    only and records each run once."""
    grid = Grid("synthetic", (PAIR,), "kd,vanilla", (0,), tmp_path / "results",
                RunOptions(device="cpu", cache_dir=tmp_path / "cache"))
    [cohort], _ = plan_sweep(grid)
    executor = submitit.DebugExecutor(tmp_path / "logs")
    save, saved = bench.run.runner.checkpoint.save, []

    def save_counted(state, path, stop_after=None):
        save(state, path)
        if "runs" in path.parts:
            saved.append(len(state["history"]))
            if len(saved) == stop_after:
                raise KeyboardInterrupt  # the job is stopped, as by SLURM's preemption or time limit

    monkeypatch.setattr(bench.run.runner.checkpoint, "save", lambda s, p: save_counted(s, p, stop_after=2))
    job = CohortJob(cohort.run_argv(grid))
    assert executor.submit(job).result() == 130
    assert saved == [1, 1] and not (grid.results_dir / "synthetic" / "runs.csv").exists()

    requeued = job.checkpoint()  # what submitit calls on USR2 before it requeues the job
    assert isinstance(requeued, DelayedSubmission) and requeued.function.argv == cohort.run_argv(grid)
    saved.clear()
    monkeypatch.setattr(bench.run.runner.checkpoint, "save", save_counted)
    assert executor.submit(requeued.function, *requeued.args, **requeued.kwargs).result() == 0
    assert saved == [2, 2]  # epoch 2 of each run, nothing retrained
    runs = read_runs(grid.results_dir)
    assert sorted(runs["run_id"]) == sorted(cohort.run_ids)
    assert all(len(json.loads(curve)) == 2 for curve in runs["curve"])


@pytest.mark.slow
def test_a_two_process_job_trains_the_cohort_with_ddp(tmp_path, cli):
    """Two tasks of one local job join one gloo world through TorchDistributedEnvironment."""
    done = cli(*sweep_args(tmp_path, "--losses", "sp", "--seeds", "0", "--gpus-per-node", "2"))
    assert done.code == 0, done.err
    runs = read_runs(tmp_path / "results")
    assert len(runs) == 1 and runs["device"].str.fullmatch(r"2 x .* \(16 per process\)").all()
    [entry] = JobBook(tmp_path / "results").entries()
    assert (JobBook(tmp_path / "results").logs / f"{entry.job_id}_1_log.err").is_file()  # the second task ran


def test_slurm_jobs_get_the_config_files_settings_and_the_options_above_them(tmp_path, cli, monkeypatch):
    """sbatch and srun stand-ins on the PATH: the script submitit hands to sbatch carries every setting."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for name, body in {"sbatch": 'cp "$1" "$SCRIPT_COPY"; echo "Submitted batch job 4242"', "srun": "exit 0"}.items():
        (tools / name).write_text(f"#!/bin/sh\n{body}\n")
        (tools / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SCRIPT_COPY", str(tmp_path / "script.sh"))
    config = tmp_path / "slurm.toml"
    config.write_text('partition = "gpu"\naccount = "lab"\nnodes = 1\ngpus_per_node = 4\ntime = 600\n'
                      '[sbatch]\nqos = "high"\n')
    done = cli(*sweep_args(tmp_path, "--losses", "kd", "--seeds", "0", "--launcher", "slurm", "--slurm-config", config,
                           "--nodes", "2", "--sbatch", "constraint=a100"))
    assert done.code == 0, done.err
    flags = {line.removeprefix("#SBATCH ") for line in (tmp_path / "script.sh").read_text().splitlines()
             if line.startswith("#SBATCH")}
    assert {"--partition=gpu", "--account=lab", "--nodes=2", "--gpus-per-node=4", "--ntasks-per-node=4",
            "--time=600", "--qos=high", "--constraint=a100"} <= flags
    assert any(flag.startswith("--signal=USR2@") for flag in flags)  # submitit's requeue signal
    [entry] = JobBook(tmp_path / "results").entries()
    assert (entry.job_id, entry.launcher) == ("4242", "slurm")
