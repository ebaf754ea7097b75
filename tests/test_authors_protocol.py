"""``--protocol authors``: each loss trains the schedule its authors used for the pair (CIFAR-100), the
shared standard protocol stays the default; checked against the authors' files and end to end on a
synthetic stand-in."""

from __future__ import annotations

import json

import pytest

import bench.run.runner
from bench.recipes.resolve import Pair, dataset_recipe, loss_schedule, pair_loss_settings, resolve_loss, resolve_train
from helpers import read_runs, synthetic_run


def authors(loss: str, pair: str, protocol: str = "authors"):
    """(training settings, loss weight, params) of ``loss`` on a CIFAR-100 pair under ``protocol``."""
    teacher, student = pair.split("-")
    recipe, tuned = dataset_recipe("cifar100"), pair_loss_settings(Pair(pair, teacher, student), "cifar100")
    train = resolve_train(recipe, protocol, student, {}, loss_schedule(recipe, protocol, loss, tuned))
    spec = resolve_loss(loss, recipe, {}, tuned)
    return train, spec.weight, spec.params


@pytest.mark.parametrize("pair, batch_size, lr, weight", [
    ("resnet32x4-resnet8x4", 128, 0.1, 5.0),  # train.py defaults; script/reviewKD.sh --kd-loss-weight 5.0
    ("resnet32x4-shufflenetv2_cifar", 128, 0.02, 8.0),  # lr 0.02 for shuffle/mobile students; weight 8.0
    ("resnet56-resnet20", 128, 0.1, 0.6),
    ("resnet110-resnet32", 128, 0.1, 1.0),
])
def test_reviewkd_trains_as_its_authors(pair, batch_size, lr, weight):
    """dvlab-research/ReviewKD CIFAR-100: batch 128, lr 0.1 (0.02), SGD(momentum=0.9, nesterov=True), 240 epochs."""
    train, w, _ = authors("reviewkd", pair)
    assert (train.batch_size, train.lr, train.nesterov, train.epochs, train.milestones, w) == \
        (batch_size, lr, True, 240, (150, 180, 210), weight)


@pytest.mark.parametrize("loss, pair, epochs, lr", [
    ("mlkd", "resnet32x4-resnet8x4", 240, 0.025),  # MLKD configs/cifar100/ours/res32x4_res8x4.yaml
    ("mlkd", "resnet32x4-shufflenetv1_cifar", 960, 0.01),  # res32x4_shuv1.yaml
    ("mlkd", "resnet50_cifar-mobilenetv2_cifar", 480, 0.01),  # res50_mv2.yaml
    ("mlkd-ls", "resnet32x4-resnet8x4", 480, 0.025),  # logit-standardization-KD configs/cifar100/mlkd/
    ("mlkd-ls", "resnet32x4-shufflenetv2_cifar", 960, 0.01),
    ("mlkd-ls", "vgg13_cifar-vgg8_cifar", 480, 0.01),
    ("kd", "resnet32x4-resnet8x4", 240, 0.05),  # no entry: the CRD protocol, as RepDistiller / mdistiller
    ("dkd", "resnet32x4-shufflenetv1_cifar", 240, 0.01),
])
def test_epochs_and_lr_follow_the_authors_configs(loss, pair, epochs, lr):
    train, _, _ = authors(loss, pair)
    assert (train.epochs, train.lr, train.batch_size, train.milestones) == (epochs, lr, 64, (150, 180, 210))


def test_the_standard_protocol_ignores_the_authors_schedules():
    for loss, pair in (("reviewkd", "resnet32x4-shufflenetv2_cifar"), ("mlkd-ls", "resnet32x4-shufflenetv1_cifar")):
        train, _, _ = authors(loss, pair, protocol="standard")
        assert (train.epochs, train.batch_size, train.lr, train.nesterov) == (240, 64, 0.01, False)


@pytest.mark.parametrize("pair, weight, T, beta", [
    ("resnet56-resnet20", 18.0, 3.0, 2.0), ("resnet110-resnet20", 15.0, 2.0, 2.0),
    ("resnet110-resnet32", 15.0, 2.0, 2.0), ("vgg13_cifar-vgg8_cifar", 15.0, 2.0, 2.0),
    ("resnet50_cifar-mobilenetv2_cifar", 15.0, 2.0, 2.0), ("vgg13_cifar-mobilenetv2_cifar", 9.0, 3.0, 2.0),
    ("wrn_40_2-wrn_16_2", 12.0, 2.0, 2.0), ("wrn_40_2-wrn_40_1", 12.0, 2.0, 2.0),
    ("resnet32x4-resnet8x4", 9.0, 2.0, 8.0),
])
def test_dkd_ls_per_pair_settings_are_the_authors_logs(pair, weight, T, beta):
    """logit-standardization-KD logs/DKD/dkd,<teacher>,<student>,<base temp>,<kd weight>[,<beta>].txt; tools/train.py
    multiplies DKD's alpha and beta by --kd-weight (the harness's loss weight)."""
    for protocol in ("standard", "authors"):
        _, w, params = authors("dkd-ls", pair, protocol)
        assert (w, params["T"], params["beta"], params["alpha"]) == (weight, T, beta, 1.0)


def test_authors_protocol_end_to_end_on_a_synthetic_stand_in(tmp_path, teacher_cache, cli, monkeypatch):
    """A synthetic recipe shaped as CIFAR-100's: a loss with its own batch size, lr and Nesterov trains in a cohort of
    its own, a loss with more epochs trains them, a loss without an entry keeps the protocol's settings; the rows
    and their configs say so, and the protocol is named in the row."""
    recipe = dataset_recipe("synthetic")
    recipe["protocols"]["authors"] = {"epochs": 1, "milestones": [],
                                      "losses": {"reviewkd": {"batch_size": 48, "lr": 0.1, "nesterov": True},
                                                 "mlkd": {"epochs": 2}}}
    monkeypatch.setattr(bench.run.runner, "dataset_recipe", lambda name: recipe)
    cohorts = []
    train_cohort = bench.run.runner.train_cohort
    monkeypatch.setattr(bench.run.runner, "train_cohort", lambda students, *a, **k: (
        cohorts.append(sorted(s.name for s in students)), train_cohort(students, *a, **k)))
    assert cli(*synthetic_run(tmp_path, teacher_cache, "--losses", "kd,reviewkd,mlkd", "--protocol", "authors")).code == 0
    runs = read_runs(tmp_path / "results").set_index("loss")
    assert runs["protocol"].eq("authors").all()
    assert runs.loc["kd", ["epochs", "batch_size", "lr"]].tolist() == [1, 32, 0.05]
    assert runs.loc["reviewkd", ["epochs", "batch_size", "lr"]].tolist() == [1, 48, 0.1]
    assert runs.loc["mlkd", ["epochs", "batch_size", "lr"]].tolist() == [2, 32, 0.05]
    config = json.loads((tmp_path / "results" / "synthetic" / "configs" / f"{runs.loc['reviewkd', 'run_id']}.json")
                        .read_text())
    assert config["train"]["nesterov"] is True
    assert sorted(cohorts) == [["kd", "mlkd"], ["reviewkd"]]  # one data stream per batch size


def test_authors_protocol_elsewhere_names_the_protocols_there(cli, tmp_path, teacher_cache):
    result = cli(*synthetic_run(tmp_path, teacher_cache, "--losses", "kd", "--protocol", "authors"))
    assert result.code == 2 and "unknown protocol 'authors'; expected one of: standard, fast" in result.err
    assert not (tmp_path / "results").exists()
