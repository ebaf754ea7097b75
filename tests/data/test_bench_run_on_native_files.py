"""`bench run` on the paper's datasets, read through the real loaders from native-format files."""

from __future__ import annotations

import pandas as pd
import pytest
import timm
import torch

from bench.data import cifar
from helpers import write_cifar, write_class_folders, write_svhn

pytestmark = pytest.mark.slow


def run_args(tmp_path, dataset, *extra):
    return ["run", "--dataset", dataset, "--data-dir", tmp_path / "data", "--results-dir", tmp_path / "results",
            "--cache-dir", tmp_path / "cache", "--epochs", "1", "--batch-size", "2", "--device", "cpu", "--quiet",
            "--validation-size", "1",  # the recipes hold out thousands; these files have a handful of images
            *extra]


def test_cifar100_crd_table_pair(tmp_path, cli):
    write_cifar(tmp_path / "data", cifar.CIFAR100)
    result = cli(*run_args(tmp_path, "cifar100", "--pair", "resnet32x4-resnet8x4", "--losses", "kd,crd,ot"))
    assert result.code == 0, result.err
    runs = pd.read_csv(tmp_path / "results" / "cifar100" / "runs.csv")
    assert sorted(runs["loss"]) == ["crd", "kd", "ot-ipot"]
    assert runs["pair"].eq("resnet32x4-resnet8x4").all() and runs["stem"].eq("native").all()


def test_svhn_default_pair_with_extra_split(tmp_path, cli):
    for part, count in (("train", 6), ("test", 4), ("extra", 4)):
        write_svhn(tmp_path / "data", part, count, seed=len(part))
    result = cli(*run_args(tmp_path, "svhn", "--losses", "kd,crd,ot", "--train-split", "train+extra"))
    assert result.code == 0, result.err
    runs = pd.read_csv(tmp_path / "results" / "svhn" / "runs.csv")
    assert len(runs) == 3 and runs["epochs"].eq(1).all()


def test_imagenet_pair_with_a_teacher_checkpoint(tmp_path, cli):
    """Class-folder ImageNet; the teacher comes from a checkpoint (pretrained weights need the internet)."""
    write_class_folders(tmp_path / "data", {"train": 2, "val": 1})
    checkpoint = tmp_path / "resnet34.pt"
    torch.save(timm.create_model("resnet34", num_classes=2).state_dict(), checkpoint)
    result = cli(*run_args(tmp_path, "imagenet", "--losses", "kd,crd,ot", "--teacher-checkpoint", checkpoint,
                           "--workers", "0"))
    assert result.code == 0, result.err
    runs = pd.read_csv(tmp_path / "results" / "imagenet" / "runs.csv")
    assert sorted(runs["loss"]) == ["crd", "kd", "ot-ipot"] and runs["pair"].eq("resnet34-resnet18").all()
    assert runs["stem"].eq("native").all()
