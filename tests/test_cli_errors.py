"""Bad input: one line naming the problem and the choices, exit code 2, nothing written."""

from __future__ import annotations

import pytest

from helpers import synthetic_run

CASES = {
    "unknown loss": (["--losses", "kd,nope"], "unknown loss 'nope'; expected one of: "),
    "unknown model": (["--student", "resnet_nope"], "unknown model 'resnet_nope'"),
    "unknown pair": (["--pair", "a-b"], "unknown pair 'a-b'; expected one of: "),
    "pair and model": (["--pair", "test_resnet-test_resnet", "--teacher", "test_resnet"], "either --pair or"),
    "unknown protocol": (["--protocol", "slow"], "unknown protocol 'slow'; expected one of: standard, fast"),
    "zero epochs": (["--epochs", "0"], "epochs must be a positive integer"),
    "negative lr": (["--lr", "-1"], "lr must be positive"),
    "bad seeds": (["--seeds", "a,b"], "--seeds expects comma-separated integers"),
    "unknown hyperparameter": (["--losses", "kd", "--set", "kd.tau=2"], "loss 'kd' has no hyperparameter tau; expected: "),
    "setting for absent loss": (["--losses", "kd", "--set", "fitnet.stage=1"], "not in --losses"),
    "unknown split": (["--train-split", "extra"], "synthetic has no train split 'extra'"),
    "bad device": (["--device", "tpu"], "unknown device 'tpu'"),
    "bad data path": (["--data-path", "disk"], "unknown data path 'disk'; expected one of: resident, loader"),
    "missing teacher checkpoint": (["--teacher-checkpoint", "/nonexistent.pt"], "does not exist"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_run_input(case, cli, tmp_path):
    args, message = CASES[case]
    result = cli(*synthetic_run(tmp_path, tmp_path / "cache", *args))
    assert result.code == 2
    assert result.err.startswith("error: ") and message in result.err and result.err.count("\n") == 1
    assert "Traceback" not in result.err
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()


def test_unknown_dataset_and_missing_data(cli, tmp_path):
    result = cli("run", "--dataset", "mnist", "--results-dir", tmp_path / "r")
    assert result.code == 2 and "unknown dataset 'mnist'; expected one of: " in result.err and "cifar100" in result.err
    result = cli("run", "--dataset", "fashion-mnist", "--data-dir", tmp_path, "--results-dir", tmp_path / "r")
    assert result.code == 2 and "Fashion-MNIST not found" in result.err
    assert not (tmp_path / "r").exists()


def test_usage_errors_are_one_line_too(cli):
    result = cli("run", "--no-such-option")
    assert result.code == 2 and result.err == "error: No such option: --no-such-option\n"
    assert cli("pairs", "list", "--dataset", "nope").code == 2


def test_catalog_commands_list_the_choices(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # each row on one line (piped output wraps cells at 100 columns)
    pairs = cli("pairs", "list")
    assert pairs.code == 0 and "resnet32x4-resnet8x4" in pairs.out and "wrn_40_2-shufflenetv1_cifar" in pairs.out
    assert "dkd beta=2.0" in pairs.out  # resnet56-resnet20's tuned DKD setting
    datasets = cli("datasets", "list")
    assert datasets.code == 0 and all(n in datasets.out for n in ("cifar100", "svhn", "imagenet", "fashion-mnist"))
