"""A cohort on 2 gloo processes (torchrun): the ranks' slices make up the 1-process batches, only rank 0
records, and a 1-process run resumes on 2 processes. (Weight equality with 1 process in float32 is
not yet shown: see the issue on scaling out.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import bench.runner
from bench.data import DataRequest, load_dataset
from bench.data.stream import Loading, Shard, make_stream
from bench.training.distributed import World
from helpers import read_runs, synthetic_run
from registry import ConfigError

# per-example (kd), batch-wise with gathered features (sp), batch-wise with a memory bank (crd)
LOSSES = "kd,sp,crd"


def torchrun(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
               "-m", "bench.cli", *map(str, args)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


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
    save, saved = bench.runner.checkpoint.save, []

    def save_then_interrupt(state, path):
        save(state, path)
        saved.append(path)
        if len(saved) == len(LOSSES.split(",")):
            raise KeyboardInterrupt

    monkeypatch.setattr(bench.runner.checkpoint, "save", save_then_interrupt)
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
