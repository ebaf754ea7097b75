"""The published CRD table: its name mapping, and its join on pair + loss in a cifar100 report."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bench.report import build_report
from bench.report.reference import published

ZOO = {
    "resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet8x4", "resnet32x4",
    "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2", "vgg8_cifar", "vgg11_cifar", "vgg13_cifar", "vgg16_cifar",
    "vgg19_cifar", "mobilenetv2_cifar", "shufflenetv1_cifar", "shufflenetv2_cifar", "resnet50_cifar",
}
LOSSES = {"teacher", "vanilla", "kd", "fitnet", "at", "sp", "cc", "vid", "rkd", "pkt", "ab", "ft", "fsp", "nst", "crd"}


def test_published_table_uses_our_names_one_to_one():
    reference = published("cifar100")
    table = reference.table
    assert reference.citation.startswith("CIFAR-100 top-1 (%) published in Tian, Krishnan, Isola")
    # 13 pairs x (teacher, vanilla, 13 losses), less FSP for the 6 cross-architecture pairs
    assert len(table) == 13 * 15 - 6
    assert set(table["teacher"]) | set(table["student"]) <= ZOO
    assert set(table["loss"]) == LOSSES
    assert (table["pair"] == table["teacher"] + "-" + table["student"]).all()
    assert not table.duplicated(["pair", "loss"]).any()
    for ours, paper in (("teacher", "paper_teacher"), ("student", "paper_student"), ("loss", "paper_method")):
        assert table.groupby(paper)[ours].nunique().eq(1).all()  # each paper name maps to one of ours
        assert table.groupby(ours)[paper].nunique().eq(1).all()
    indexed = table.set_index(["pair", "loss"])["top1"]
    assert indexed["resnet32x4-resnet8x4", "crd"] == 75.51
    assert indexed["vgg13_cifar-mobilenetv2_cifar", "teacher"] == 74.64
    assert math.isnan(indexed["wrn_40_2-wrn_40_1", "fsp"])  # N/A in the source


def test_no_published_table_for_other_datasets():
    assert published("svhn") is None


@pytest.fixture(scope="module")
def cifar100(run_row, write_runs):
    """resnet32x4 -> resnet8x4 under the paper's budget (standard, 240 epochs, batch 64) and a 30-epoch run."""
    pair = "resnet32x4-resnet8x4"
    rows = [run_row("kd", 0, 75.0, 73.0, pair=pair, dataset="cifar100", epochs=240),
            run_row("kd", 1, 75.0, 74.0, pair=pair, dataset="cifar100", epochs=240)]
    rows += [run_row("dist", 0, 76.0, pair=pair, dataset="cifar100", epochs=240)]
    rows += [run_row("kd", 0, 60.0, pair=pair, dataset="cifar100", protocol="fast", epochs=30)]
    root = write_runs(rows)
    build_report(root, console=False)
    return root / "cifar100"


def test_published_number_and_difference_beside_ours(cifar100):
    table = pd.read_csv(cifar100 / "leaderboard.csv").set_index(["protocol", "loss"])
    kd = table.loc[("standard", "kd")]
    assert kd["published_top1"] == 73.33
    assert kd["delta_published"] == pytest.approx((73.0 + 74.0) / 2 - 73.33)  # last-epoch mean, like the paper
    assert kd["published_teacher_top1"] == 79.42
    assert math.isnan(table.loc[("standard", "dist"), "published_top1"])  # not in the paper
    fast = table.loc[("fast", "kd")]
    assert fast["published_top1"] == 73.33 and math.isnan(fast["delta_published"])  # other budget: no difference


def test_markdown_cites_the_published_table(cifar100):
    text = (cifar100 / "leaderboard.md").read_text()
    assert "| published (%) | Δ published (last) |" in text
    assert "| 73.33 | +0.17 |" in text
    assert 'Tian, Krishnan, Isola, "Contrastive Representation Distillation", ICLR 2020' in text
