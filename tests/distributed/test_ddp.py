"""A cohort on 2 gloo processes (torchrun) trains the 1-process cohort at the same global batch: after K
steps in float64 every student's weights and CRD's memory banks equal those of 1 process, for kd
(per example), sp (batch-wise, gathered) and crd (memory bank); dropping the gradient average is
caught. Through ``bench run``: only rank 0 records, and a 1-process run resumes on 2 processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import bench.run.runner
from bench.data import DataRequest, load_dataset
from bench.data.stream import Loading, Shard, make_stream
from bench.training.distributed import World
from helpers import read_runs, synthetic_run
from registry import ConfigError

# per-example (kd), batch-wise with gathered features (sp), batch-wise with a memory bank (crd)
LOSSES = "kd,sp,crd"


STEPS = Path(__file__).with_name("ddp_steps.py")  # K float64 steps of a kd, sp, crd cohort; saves the states
K = 3
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
# Float64 keeps the reduction-order error (the all-reduce's sum, the gathered batch's) near 1e-13 of a
# weight after K steps; a real difference (a missing average, a loss on one slice) is orders above it.
RTOL, ATOL = 1e-10, 1e-12


def run(command: list) -> subprocess.CompletedProcess:
    done = subprocess.run([*map(str, command)], env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def torchrun(*args) -> subprocess.CompletedProcess:
    command = [*TORCHRUN, "-m", "bench", *map(str, args)]
    return subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)


def float64_states(tmp: Path, processes: int, *flags: str) -> dict:
    out = tmp / f"{processes}-{'-'.join(flags)}.pt"
    run([*(TORCHRUN if processes == 2 else [sys.executable]), STEPS, out, K, *flags])
    return torch.load(out, weights_only=True)


def differences(got: dict, expected: dict) -> list[str]:
    """The float tensors (weights, BN statistics, CRD's banks and Z) that differ beyond reduction order."""
    return [f"{loss}.{part}.{key}" for loss in expected for part in ("network", "loss")
            for key, value in expected[loss][part].items()
            if value.is_floating_point() and not torch.allclose(got[loss][part][key], value, rtol=RTOL, atol=ATOL)]


@pytest.fixture(scope="module")
def one_process_steps(tmp_path_factory) -> dict:
    return float64_states(tmp_path_factory.mktemp("steps"), 1)


def test_two_processes_train_the_same_weights_as_one_at_the_same_global_batch(one_process_steps, tmp_path):
    two = float64_states(tmp_path, 2)
    assert sorted(two) == sorted(one_process_steps) == ["crd", "kd", "sp"]
    assert {"memory_s", "memory_t", "z_s", "z_t"} <= set(two["crd"]["loss"])
    assert differences(two, one_process_steps) == []


def test_the_equality_check_catches_ranks_that_do_not_average_gradients(one_process_steps, tmp_path):
    two = float64_states(tmp_path, 2, "--no-gradient-average")
    changed = differences(two, one_process_steps)
    assert {name.split(".")[0] for name in changed} == {"kd", "sp", "crd"}
    assert "crd.loss.memory_s" in changed  # the memory bank follows the embeddings of the wrong weights


def checkpoints(cache: Path) -> dict[str, dict]:
    return {p.name: torch.load(p, weights_only=True) for p in sorted((cache / "runs").glob("*.pt"))}


def assert_same_trained_parts(got: dict, expected: dict) -> None:
    """Every run checkpointed once, with the same parts and shapes as on one process, all finite."""
    assert got.keys() == expected.keys() and len(got) == len(LOSSES.split(","))
    for name in expected:
        for part in ("network", "loss"):  # the loss part holds CRD's heads, memory banks and Z
            mine, theirs = got[name][part], expected[name][part]
            assert {k: v.shape for k, v in mine.items()} == {k: v.shape for k, v in theirs.items()}
            assert all(torch.isfinite(v.float()).all() for v in mine.values() if v.is_floating_point())


def with_teacher_of(source: Path, cache: Path) -> Path:
    shutil.copytree(source / "teachers", cache / "teachers")
    return cache


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    from bench.cli import main

    tmp = tmp_path_factory.mktemp("one")
    assert main(synthetic_run(tmp, tmp / "cache", "--losses", LOSSES)) == 0
    return tmp


def test_two_processes_train_and_record_each_run_once(one_process, tmp_path):
    cache = with_teacher_of(one_process / "cache", tmp_path / "cache")
    done = torchrun(*synthetic_run(tmp_path, cache, "--losses", LOSSES))
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_trained_parts(checkpoints(cache), checkpoints(one_process / "cache"))
    runs, reference = read_runs(tmp_path / "results"), read_runs(one_process / "results")
    assert runs["run_id"].tolist() == reference["run_id"].tolist()  # one row each: only rank 0 wrote
    assert runs["device"].str.fullmatch(r"2 x .* \(16 per process\)").all()


def test_a_run_resumes_on_two_processes(one_process, tmp_path, cli, monkeypatch):
    """Epoch 1 on one process, interrupted; epoch 2 on two processes: the uninterrupted result."""
    cache = with_teacher_of(one_process / "cache", tmp_path / "cache")
    save, saved = bench.run.runner.checkpoint.save, []

    def save_then_interrupt(state, path):
        save(state, path)
        saved.append(path)
        if len(saved) == len(LOSSES.split(",")):
            raise KeyboardInterrupt

    monkeypatch.setattr(bench.run.runner.checkpoint, "save", save_then_interrupt)
    args = synthetic_run(tmp_path, cache, "--losses", LOSSES)
    assert cli(*args).code == 130
    done = torchrun(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_trained_parts(checkpoints(cache), checkpoints(one_process / "cache"))
    assert read_runs(tmp_path / "results")["run_id"].is_unique


@pytest.mark.parametrize("path", ["resident", "loader"])
def test_the_ranks_slices_make_up_every_global_batch(path):
    data = load_dataset("synthetic", DataRequest())
    loading = Loading(path, workers=0)

    def ids(shard: Shard, train: bool) -> list[list[int]]:
        stream = make_stream(data.train if train else data.test, data.info, 48, torch.device("cpu"), train=train,
                             seed=3, loading=loading, shard=shard)
        return [indices.tolist() for _, _, indices in stream.epoch(1)]

    for train in (True, False):
        whole, parts = ids(Shard(), train), [ids(Shard(rank, 2), train) for rank in (0, 1)]
        assert len(parts[0]) == len(parts[1]) == len(whole)
        assert [a + b for a, b in zip(*parts)] == whole


def test_a_global_batch_that_does_not_split_evenly_is_refused():
    assert World(0, 4).per_rank_batch(64) == 16
    with pytest.raises(ConfigError, match="expected a multiple of 3"):
        World(1, 3).per_rank_batch(64)
