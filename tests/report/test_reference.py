"""The published tables (CRD's, and the methods published since): their name mapping, and their join
on pair + loss in a cifar100 report."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bench.report import build_report
from bench.report.reference import Published, Table, conflicts, published
from losses import LOSSES as REGISTERED

ZOO = {
    "resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet8x4", "resnet32x4",
    "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2", "vgg8_cifar", "vgg11_cifar", "vgg13_cifar", "vgg16_cifar",
    "vgg19_cifar", "mobilenetv2_cifar", "shufflenetv1_cifar", "shufflenetv2_cifar", "resnet50_cifar",
}
LOSSES = {"teacher", "vanilla", "kd", "fitnet", "at", "sp", "cc", "vid", "rkd", "pkt", "ab", "ft", "fsp", "nst", "crd"}


def test_published_table_uses_our_names_one_to_one():
    reference = published("cifar100").tables[0]
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
    rows += [run_row("dkd-ls", seed, 78.0, last, pair=pair, dataset="cifar100", epochs=240)
             for seed, last in ((0, 77.5), (1, 77.0))]
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


MODERN = "sunshangquan/logit-standardization-KD README (Sun et al. CVPR 2024)"


def test_modern_table_joins_the_crd_table_with_our_names():
    crd, modern = published("cifar100").tables
    assert modern.citation.startswith("CIFAR-100 top-1 (%) of the logit losses 2024-2026 papers compare against")
    assert len(modern.table) == 76 and not modern.table.duplicated(["pair", "loss"]).any()
    assert set(modern.table["loss"]) <= set(REGISTERED.names())
    assert set(modern.table["pair"]) <= set(crd.table["pair"])  # the standard pairs
    joined = published("cifar100").table.set_index(["pair", "loss"])
    assert len(joined) == len(crd.table) + len(modern.table)  # no (pair, loss) in both
    assert joined.loc[("resnet32x4-resnet8x4", "dkd-ls"), "top1"] == 77.01
    assert joined.loc[("resnet32x4-resnet8x4", "dkd-ls"), "source"] == MODERN
    assert joined.loc[("wrn_40_2-wrn_16_2", "wttm"), "source"] == "zkxufo/TTM README (Zheng & Yang ICLR 2024)"
    assert joined.loc[("resnet32x4-resnet8x4", "crd"), "source"] == "crd_cifar100.csv"


def test_modern_loss_gets_its_published_number_and_source_crd_losses_unchanged(cifar100):
    table = pd.read_csv(cifar100 / "leaderboard.csv").set_index(["protocol", "loss"])
    dkd_ls = table.loc[("standard", "dkd-ls")]
    assert dkd_ls["published_top1"] == 77.01 and dkd_ls["published_source"] == MODERN
    assert dkd_ls["delta_published"] == pytest.approx((77.5 + 77.0) / 2 - 77.01)
    assert dkd_ls["published_teacher_top1"] == 79.42  # the pair's teacher, from the CRD table
    kd = table.loc[("standard", "kd")]
    assert kd["published_top1"] == 73.33 and kd["published_source"] == "crd_cifar100.csv"


def test_markdown_cites_every_published_table(cifar100):
    text = (cifar100 / "leaderboard.md").read_text()
    assert "| 77.01 | +0.24 |" in text
    assert 'Tian, Krishnan, Isola, "Contrastive Representation Distillation", ICLR 2020' in text
    assert "of the logit losses 2024-2026 papers compare against, as their authors' READMEs publish them" in text
    assert f"crd_cifar100.csv; {MODERN}; zkxufo/TTM README (Zheng & Yang ICLR 2024)." in text


def _table(rows: list[tuple], budget: dict, source: str = "a paper") -> Table:
    frame = pd.DataFrame(rows, columns=["pair", "loss", "top1"]).assign(source=source, strong_view=False)
    return Table(frame, f"cited as {source}.", budget)


def test_a_number_published_with_a_strong_view_is_compared_with_strong_view_runs_only():
    table = _table([("t-s", "mlkd", 77.0), ("t-s", "kd", 73.0)], {"epochs": 240})
    table.table.loc[0, "strong_view"] = True
    ours = pd.DataFrame({"pair": "t-s", "loss": ["mlkd", "mlkd", "kd", "kd"], "epochs": 240,
                         "strong_view": [True, False, True, False], "last_top1_mean": [78.0, 70.0, 74.0, 72.0]})
    joined = Published((table,)).join(ours)
    assert joined["published_top1"].tolist() == [77.0, 77.0, 73.0, 73.0]
    assert joined["delta_published"].tolist()[0] == 1.0 and joined["delta_published"].tolist()[3] == -1.0
    assert joined["delta_published"].iloc[1:3].isna().all()


def test_the_published_mlkd_rows_are_marked_as_trained_on_a_strong_view():
    _, modern = published("cifar100").tables
    marked = modern.table[modern.table["strong_view"]]
    assert set(marked["loss"]) == {"mlkd", "mlkd-ls"} and len(marked) == (modern.table["loss"].isin(["mlkd", "mlkd-ls"])).sum()


def test_a_pair_and_loss_given_twice_with_different_numbers_is_named():
    first = _table([("t-s", "kd", 73.0), ("t-s", "crd", 75.0), ("t-s", "fsp", math.nan)], {"epochs": 240})
    second = _table([("t-s", "kd", 73.0), ("t-s", "crd", 75.5), ("t-s", "fsp", 70.0)], {"epochs": 240})
    assert conflicts((first, second), ["a.csv", "b.csv"]) == ["t-s crd: 75.0 in a.csv, 75.5 in b.csv",
                                                              "t-s fsp: nan in a.csv, 70.0 in b.csv"]
    assert conflicts((first, first), ["a.csv", "a.csv"]) == []  # the same number twice is no conflict


def test_each_table_compares_only_runs_trained_with_its_budget():
    reference = Published((_table([("t-s", "kd", 70.0)], {"epochs": 240}, "long"),
                           _table([("t-s", "dkd", 71.0)], {"epochs": 30}, "short")))
    ours = pd.DataFrame({"pair": "t-s", "loss": ["kd", "kd", "dkd", "dkd"], "epochs": [240, 30, 240, 30],
                         "last_top1_mean": [72.0, 60.0, 73.0, 61.0]})
    joined = reference.join(ours)
    assert joined["published_top1"].tolist() == [70.0, 70.0, 71.0, 71.0]
    assert joined["published_source"].tolist() == ["long", "long", "short", "short"]
    assert joined["delta_published"].tolist()[0] == 2.0 and joined["delta_published"].tolist()[3] == -10.0
    assert joined["delta_published"].iloc[1:3].isna().all()
    assert reference.note.startswith("Published: cited as long. cited as short. Each row's source")
    assert "source (published_source in leaderboard.csv): long; short." in reference.note
    assert "for runs with epochs 240; epochs 30." in reference.note
