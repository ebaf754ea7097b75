"""`bench reproduce`: a stored run trained again is bitwise identical here; differences and bad input are plain."""

from __future__ import annotations

import json
import platform
import shutil
import statistics

import numpy
import ot
import pandas as pd
import pytest
import torch

from bench.run.reproduce import StoredRun, changed_settings, rerun_arguments
from helpers import read_runs, synthetic_run

LOSSES = "vanilla,kd"


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """A 1-epoch cohort of two losses and two seeds with its own cache (its teacher and checkpoints)."""
    from bench.cli import main

    tmp = tmp_path_factory.mktemp("original")
    assert main(synthetic_run(tmp, tmp / "cache", "--losses", LOSSES, "--seeds", "0,1", "--protocol", "fast")) == 0
    return tmp


def kd_seed_1(root) -> pd.Series:
    runs = read_runs(root / "results")
    return runs[(runs["loss"] == "kd") & (runs["seed"] == 1)].iloc[0]


TIMINGS = {"step_s", "wall_s", "loss_ms"}  # measured, not computed


def same_state(a, b) -> bool:
    """Every tensor equal bit for bit, everything else equal but the timings of the history."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a.keys() - TIMINGS)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(same_state, a, b))
    return a == b


def test_a_cohort_member_trained_again_alone_is_bitwise_identical(original, tmp_path, cli):
    stored = kd_seed_1(original)
    before = sorted(p.relative_to(original) for p in original.rglob("*"))
    result = cli("reproduce", stored["run_id"], "--results-dir", original / "results", "--scratch-dir", tmp_path,
                 "--quiet")
    assert result.code == 0, result.err
    assert "identical: every number of the row is the same" in result.out
    kd = read_runs(original / "results").query("loss == 'kd'")
    for metric in ("best_top1", "last_top1"):  # the spread: sample std over the stored seeds of the recipe
        assert f"inside the seed spread (std {statistics.stdev(kd[metric]):.2f} over 2 seeds)" in result.out
    reproduced = read_runs(tmp_path / "results")
    assert len(reproduced) == 1 and reproduced["run_id"][0] == stored["run_id"]
    assert reproduced["command"][0].startswith("bench run --dataset synthetic")
    assert "--losses kd --seeds 1" in reproduced["command"][0]
    original_state = torch.load(original / "cache" / "runs" / f"{stored['run_id']}.pt", weights_only=True)
    reproduced_state = torch.load(tmp_path / "cache" / "runs" / f"{stored['run_id']}.pt", weights_only=True)
    assert same_state(original_state, reproduced_state)  # weights, optimizer and loss state, bit for bit
    other_seed = read_runs(original / "results").query("loss == 'kd' and seed == 0")["run_id"].iloc[0]
    assert not same_state(original_state, torch.load(original / "cache" / "runs" / f"{other_seed}.pt", weights_only=True))
    assert sorted(p.relative_to(original) for p in original.rglob("*")) == before  # nothing shared was written


def test_every_row_records_the_hardware_and_library_versions(original):
    row = kd_seed_1(original)
    with open("/proc/cpuinfo") as info:
        model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), None)
    if model:
        assert row["device"].startswith(model)
    assert "cores" in row["device"] and torch.backends.cpu.get_cpu_capability() in row["device"]
    assert (row["torch_version"], row["numpy_version"], row["pot_version"], row["python_version"]) == (
        torch.__version__, numpy.__version__, ot.__version__, platform.python_version())
    config = json.loads((original / "results" / "synthetic" / "configs" / f"{row['run_id']}.json").read_text())
    assert config["device"] == "cpu" and config["torch_threads"] == torch.get_num_threads()


def test_a_stored_number_that_differs_is_not_reproduced_and_one_seed_has_no_spread(original, tmp_path, cli):
    """A copy of the results with seed 0 gone and seed 1's last top-1 changed by hand, named by its config path."""
    copy = tmp_path / "copy"
    shutil.copytree(original / "results", copy)
    runs = pd.read_csv(copy / "synthetic" / "runs.csv", dtype=str)
    runs = runs[runs["seed"] == "1"]
    kd = runs["loss"] == "kd"
    runs.loc[kd, "last_top1"] = f"{float(runs.loc[kd, 'last_top1'].iloc[0]) + 0.5:.2f}"
    runs.to_csv(copy / "synthetic" / "runs.csv", index=False)
    config = copy / "synthetic" / "configs" / f"{runs.loc[kd, 'run_id'].iloc[0]}.json"
    result = cli("reproduce", config, "--scratch-dir", tmp_path / "scratch", "--quiet")
    assert result.code == 1
    assert "NOT reproduced: the same hardware and library versions gave different numbers" in result.out
    last = next(line for line in result.out.splitlines() if line.startswith("last top-1"))
    assert "-0.50" in last and "seed spread n/a (one seed)" in last


def test_bad_input_is_one_line_and_exit_2(original, tmp_path, cli):
    stored = kd_seed_1(original)
    results = original / "results"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "something").write_text("")
    for args, problem in [
        (["no-such-run", "--results-dir", results], "no run 'no-such-run'"),
        ([tmp_path / "configs" / "abc.json"], "no config file"),
        ([stored["run_id"], "--results-dir", results, "--cache-dir", original / "cache"], "would be resumed"),
        ([stored["run_id"], "--results-dir", results, "--scratch-dir", tmp_path / "full"], "is not empty"),
    ]:
        result = cli("reproduce", *args)
        assert result.code == 2
        assert result.err.startswith("error: ") and problem in result.err and result.err.count("\n") == 1


def stored_run(command: str, **config) -> StoredRun:
    config = {"run_id": "r", "command": command, "loss": {"name": "kd"}, "seed": 3, **config}
    return StoredRun(config, pd.Series(dtype=object), pd.DataFrame())


def test_rerun_arguments_narrow_the_stored_command_to_the_run():
    command = ("bench run --losses vanilla,kl,dkd --seeds 0,1,2 --set dkd.beta=2 --set=kl.T=2 --set kd.ce_weight=0.5 "
               "--results-dir old --cache-dir=old --device auto --protocol fast")
    args = rerun_arguments(stored_run(command, device="cuda:0"), "new", "scratch", None)
    assert args == ["run", "--set", "kl.T=2", "--set", "kd.ce_weight=0.5", "--protocol", "fast",  # kl: kd's alias
                    "--losses", "kd", "--seeds", "3", "--results-dir", "new", "--cache-dir", "scratch",
                    "--validation-size", "0", "--device", "cuda:0"]  # a run from before validation splits
    assert rerun_arguments(stored_run(command), "new", "scratch", "cpu")[-2:] == ["--device", "cpu"]
    distributed = rerun_arguments(stored_run("bench run --nproc 2", world_size=4, device="cuda:1"), "n", "s", None)
    assert distributed[-4:] == ["--nproc", "4", "--validation-size", "0"] and "--device" not in distributed
    held_out = rerun_arguments(stored_run("bench run --validation-size 100", validation_size=100), "n", "s", "cpu")
    assert held_out.count("--validation-size") == 1 and held_out[held_out.index("--validation-size") + 1] == "100"


def test_changed_settings_name_what_moved_the_run_id():
    old = {"run_id": "a", "command": "x", "device": "cpu", "train": {"epochs": 1, "milestones": []}, "seed": 0}
    new = {"run_id": "b", "command": "y", "device": "cuda", "train": {"epochs": 1, "milestones": [1]}, "seed": 0}
    assert changed_settings(old, new) == ["train.milestones: [] -> [1]"]
