"""``bench run`` when inputs are wrong, files are damaged, or processes share directories: every bad value
is refused in the plan (one line, exit 2, nothing written), damaged cached files are set aside and the
work redone, and two processes never train or record one run twice."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from bench.store import checkpoint
from bench.data import cifar
from bench.data.base import DataRequest
from bench.run.runner import RunRequest, plan_run
from bench.store.results import ResultsStore
from helpers import read_runs, synthetic_run, write_cifar
from losses import LOSSES
from losses.kd import KD
from registry import ConfigError
from registry.core import BUILTIN_PROVIDER

GROUP = "distillbench.losses"
FAST = ("--losses", "vanilla", "--epochs", "1")


def assert_refused(result, message: str, tmp_path: Path) -> None:
    assert result.code == 2, result.err
    assert result.err.startswith("error: ") and message in result.err and result.err.count("\n") == 1
    assert not (tmp_path / "results" / "synthetic").exists()


BAD_VALUES = {
    "text for a float hyperparameter": (["--losses", "kd", "--set", "kd.T=abc"], "kd.T expects a finite number, got 'abc'"),
    "text for a weight": (["--losses", "kd", "--set", "kd.weight=abc"], "kd.weight expects a finite number"),
    "list for a weight": (["--losses", "kd", "--set", "kd.weight=[1,2]"], "kd.weight expects a finite number, got [1, 2]"),
    "float for an int": (["--losses", "fitnet", "--set", "fitnet.stage=1.5"], "fitnet.stage expects an integer"),
    "inf hyperparameter": (["--losses", "kd", "--set", "kd.T=inf"], "kd.T expects a finite number, got inf"),
    "lr inf": (["--lr", "inf"], "lr must be positive and finite, got inf"),
    "lr nan": (["--lr", "nan"], "lr must be positive and finite, got nan"),
    "lr zero": (["--lr", "0"], "lr must be positive and finite, got 0"),
    "negative workers": (["--workers", "-1"], "--workers"),
    "batch larger than the training set": (["--batch-size", "257"], "batch size 257 is larger than the training set"),
}


@pytest.mark.parametrize("case", BAD_VALUES, ids=list(BAD_VALUES))
def test_bad_values_are_refused_before_any_work(case, cli, tmp_path):
    args, message = BAD_VALUES[case]
    assert_refused(cli(*synthetic_run(tmp_path, tmp_path / "cache", *args)), message, tmp_path)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("option", ["--results-dir", "--cache-dir"])
def test_a_results_or_cache_dir_that_is_a_file_is_refused_in_the_plan(option, cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    args = [a for a in synthetic_run(tmp_path, tmp_path / "cache", *FAST)]
    args[args.index(option) + 1] = blocker / "sub"
    assert_refused(cli(*args), f"{option} {blocker / 'sub'}: {blocker} is a file", tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_results_dir_is_refused_in_the_plan(cli, tmp_path):
    (tmp_path / "results").mkdir(mode=0o555)
    result = cli(*synthetic_run(tmp_path, tmp_path / "cache", *FAST))
    assert result.code == 2 and "is not writable" in result.err


def test_a_teacher_checkpoint_that_is_a_directory_or_damaged_is_named(cli, tmp_path):
    assert_refused(cli(*synthetic_run(tmp_path, tmp_path / "cache", "--teacher-checkpoint", tmp_path)),
                   f"teacher checkpoint {tmp_path} is a directory", tmp_path)
    damaged = tmp_path / "teacher.pt"
    damaged.write_bytes(b"PK\x03\x04 not a checkpoint")
    assert_refused(cli(*synthetic_run(tmp_path, tmp_path / "cache", "--teacher-checkpoint", damaged)),
                   f"checkpoint {damaged} is damaged", tmp_path)


def _save_many(path: str, worker: int) -> None:
    for i in range(40):
        checkpoint.save({"worker": worker, "i": i, "weights": torch.zeros(1000)}, Path(path))


def test_processes_sharing_a_cache_write_one_checkpoint_file_safely(tmp_path):
    path = tmp_path / "runs" / "shared.pt"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_save_many, args=(str(path), w)) for w in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert checkpoint.load(path, torch.device("cpu"))["i"] == 39
    assert [p.name for p in path.parent.iterdir()] == ["shared.pt"]


def _same_command(args: list[str], barrier, log: str) -> None:
    import sys

    from bench.cli import main

    sys.stderr = open(log, "w")
    barrier.wait()
    raise SystemExit(main(args))


def test_the_same_command_twice_at_once_trains_and_records_each_run_once(tmp_path):
    args = [str(a) for a in synthetic_run(tmp_path, tmp_path / "cache", "--losses", "vanilla,kd")]
    args.remove("--quiet")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    logs = [tmp_path / f"log{i}" for i in range(2)]
    processes = [context.Process(target=_same_command, args=(args, barrier, str(log))) for log in logs]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    assert [p.exitcode for p in processes] == [0, 0]
    runs = read_runs(tmp_path / "results")
    assert sorted(runs["loss"]) == ["kd", "vanilla"] and runs["run_id"].is_unique
    trained = [line for log in logs for line in log.read_text().splitlines() if "; training " in line]
    assert len(trained) == 1, trained  # one process trained both students; the other waited, then skipped


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished run with its own cache: the cached teacher and the student checkpoint to damage."""
    from bench.cli import main

    tmp = tmp_path_factory.mktemp("finished")
    assert main(synthetic_run(tmp, tmp / "cache", *FAST)) == 0
    return tmp


@pytest.mark.parametrize("damaged", ["teachers", "runs"])
def test_a_damaged_cached_checkpoint_is_set_aside_and_the_work_redone(damaged, finished, tmp_path, cli):
    cache = tmp_path / "cache"
    shutil.copytree(finished / "cache", cache)
    target, = (cache / damaged).glob("*.pt")
    damage = target.read_bytes()[:100]
    target.write_bytes(damage)  # cut short, as by a full disk
    result = cli(*synthetic_run(tmp_path, cache, *FAST))
    assert result.code == 0, result.err
    notice = [line for line in result.err.splitlines() if line.startswith("warning: ")]
    assert len(notice) == 1 and f"checkpoint {target} is damaged" in notice[0] and "moved to" in notice[0]
    aside, = target.parent.glob(f"{target.name}.*.damaged")
    assert aside.read_bytes() == damage and aside.name in notice[0]
    numbers = ["run_id", "best_top1", "last_top1", "curve", "teacher_top1"]
    pd.testing.assert_frame_equal(read_runs(tmp_path / "results")[numbers], read_runs(finished / "results")[numbers])


def test_a_checkpoint_damaged_twice_keeps_both_copies(tmp_path, capsys):
    path = tmp_path / "runs" / "abc.pt"
    path.parent.mkdir()
    damages = [b"\x80\x02first garbage", b"PK\x03\x04 second garbage"]
    for damage in damages:
        path.write_bytes(damage)
        assert checkpoint.restore(path, torch.device("cpu"), lambda state: None) is None
        assert not path.exists()
    kept = sorted(path.parent.glob("abc.pt.*.damaged"))
    assert sorted(p.read_bytes() for p in kept) == sorted(damages)
    notices = capsys.readouterr().err.splitlines()
    assert [line for line in notices if line.startswith("warning: ")] == notices and len(notices) == 2
    assert all(p.name in "".join(notices) for p in kept)


def test_a_garbage_checkpoint_is_named_in_a_short_line_without_torchs_advice(tmp_path):
    garbage = tmp_path / "teacher.pt"
    garbage.write_bytes(b"\x80\x02garbage")
    with pytest.raises(checkpoint.DamagedCheckpoint) as refused:
        checkpoint.load(garbage, torch.device("cpu"))
    message = str(refused.value)
    # torch's own message runs to seven lines of advice on weights_only; what matters is the byte it met ("g")
    assert message == f"checkpoint {garbage} is damaged (UnpicklingError: not a tensor checkpoint: Unsupported operand 103)"


def test_a_damaged_partial_teacher_is_set_aside_and_training_starts_over(finished, tmp_path, cli):
    request = RunRequest(dataset="synthetic", losses="vanilla", epochs=1, device="cpu",
                         results_dir=tmp_path / "results", cache_dir=tmp_path / "cache")
    plan = plan_run(request)
    from bench.recipes.resolve import content_hash

    key = content_hash({"recipe": plan.teacher.source.partition(":")[2], "seed": 0})
    partial = tmp_path / "cache" / "teachers" / f"{key}.partial.pt"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\x80\x02garbage")
    result = cli(*synthetic_run(tmp_path, tmp_path / "cache", *FAST))
    assert result.code == 0, result.err
    assert f"checkpoint {partial} is damaged" in result.err
    teacher = ["run_id", "teacher_top1"]
    pd.testing.assert_frame_equal(read_runs(tmp_path / "results")[teacher], read_runs(finished / "results")[teacher])


def test_a_missing_config_is_reported(tmp_path, capsys):
    from report.conftest import make_run

    store = ResultsStore(tmp_path, "toy")
    store.append(make_run("kd", 0, 70.0), {})
    (store.configs / f"{make_run('kd', 0, 70.0)['run_id']}.json").unlink()
    store.report_damage()
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and ".json is missing" in err and "cannot be regenerated" in err


@pytest.fixture
def clash(monkeypatch):
    """A plugin distribution that registers the built-in name 'kd' (beside every real entry point)."""
    builtins = {name: entry for name, entry in LOSSES._entries.items() if entry.provider == BUILTIN_PROVIDER}
    monkeypatch.setattr(LOSSES, "_entries", builtins)
    monkeypatch.setattr(LOSSES, "_aliases", {a: n for a, n in LOSSES._aliases.items() if n in builtins})
    monkeypatch.setattr(LOSSES, "_plugins_loaded", False)
    plugin = SimpleNamespace(name="kd", group=GROUP, dist=SimpleNamespace(name="kd-elsewhere", version="9.9"),
                             load=lambda: KD)
    monkeypatch.setattr(metadata, "entry_points", lambda group: [plugin] if group == GROUP else [])


def test_a_plugin_taking_a_builtin_name_is_shown_and_only_that_name_refused(clash, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # one table row per loss, not cells wrapped at 100 columns
    listing = cli("losses", "list")
    assert listing.code == 0, listing.err
    row = next(line for line in listing.out.splitlines() if [c.strip() for c in line.split("│")[1:2]] == ["kd"])
    assert "clash" in row and "kd-elsewhere 9.9" in listing.out
    assert "vanilla" in listing.out and "fitnet" in listing.out
    refused = cli(*synthetic_run(tmp_path, tmp_path / "cache", "--losses", "vanilla,kd"))
    assert refused.code == 2 and "provided twice: by distillbench" in refused.err and "kd-elsewhere 9.9" in refused.err
    plan = plan_run(RunRequest(dataset="synthetic", losses="vanilla,fitnet", device="cpu",
                               results_dir=tmp_path / "results", cache_dir=tmp_path / "cache"))
    assert [run.loss.name for run in plan.specs[0]] == ["vanilla", "fitnet"]


class RunsCode:
    """A pickle that runs a shell command when loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_crafted_cifar_pickle_is_never_executed(tmp_path):
    write_cifar(tmp_path, cifar.CIFAR10)
    marker = tmp_path / "executed"
    crafted = tmp_path / cifar.CIFAR10.folder / "data_batch_1"
    crafted.write_bytes(pickle.dumps({b"data": RunsCode(marker), b"labels": [0]}, protocol=2))
    with pytest.raises(ConfigError, match=r"corrupt CIFAR-10 file .*data_batch_1 .*refused to load (posix|os)\.system"):
        cifar.load_cifar(cifar.CIFAR10, DataRequest(tmp_path))
    assert not marker.exists()


def test_piped_leaderboard_is_not_wrapped_at_80_columns(tmp_path, cli):
    from report.conftest import make_run

    store = ResultsStore(tmp_path, "toy")
    for loss, seed in [("vanilla", 0), ("vanilla", 1), ("kd", 0), ("kd", 1)]:
        store.append(make_run(loss, seed, 70.0 + seed), {})
    result = cli("report", "--results-dir", tmp_path)
    assert result.code == 0, result.err
    assert any("kd" in line and "70.50 ± 0.71" in line for line in result.out.splitlines())  # a row is one line


def test_a_run_found_finished_in_the_cache_names_where_it_was_trained(tmp_path, monkeypatch, cli):
    """A shared cache holds a run trained elsewhere (another machine, another process count): the row that
    records it later says where its epochs, and so its timings, were trained, not where it was found."""
    import bench.run.runner

    cache = tmp_path / "cache"
    monkeypatch.setattr(bench.run.runner, "_device", lambda plan, batch_size: "2 x machine A (16 per process)")
    assert cli(*synthetic_run(tmp_path / "first", cache, *FAST)).code == 0
    monkeypatch.setattr(bench.run.runner, "_device", lambda plan, batch_size: "machine B")
    found = cli(*synthetic_run(tmp_path / "second", cache, *FAST[:2], "--epochs", "1", "--verbose")[:-1]) \
        if False else cli("run", "--dataset", "synthetic", "--results-dir", tmp_path / "second" / "results",
                          "--cache-dir", cache, "--device", "cpu", *FAST)
    assert found.code == 0, found.err
    assert read_runs(tmp_path / "second" / "results")["device"].tolist() == ["2 x machine A (16 per process)"]
    assert "0 students trained in" in found.err and "1 student trained earlier, taken from the cache" in found.err
