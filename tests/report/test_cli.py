"""``bench report``: the filters, and a bad filter as one line naming the valid choices (exit 2, nothing written)."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.cli import main

PAIR_A, PAIR_B = "resnet32x4-resnet8x4", "wrn_40_2-wrn_16_2"


@pytest.fixture(scope="module")
def results(run_row, write_runs):
    rows = [run_row(loss, 0, best, pair=PAIR_A) for loss, best in (("vanilla", 70.0), ("kd", 72.0), ("crd", 73.0))]
    rows += [run_row(loss, 0, best, pair=PAIR_B) for loss, best in (("vanilla", 71.0), ("kd", 71.5))]
    rows += [run_row(loss, 0, 70.0, dataset="other") for loss in ("vanilla", "kd")]
    return write_runs(rows)


def test_filters_pick_dataset_pair_and_losses(results, capsys):
    argv = ["report", "--results-dir", str(results), "--dataset", "toy", "--pair", PAIR_A, "--losses", "kd, crd"]
    assert main(argv) == 0
    table = pd.read_csv(results / "toy" / "leaderboard.csv")
    assert set(table["pair"]) == {PAIR_A}
    assert table["loss"].to_list() == ["crd", "kd"]
    assert table["delta_vanilla"].to_list() == [3.0, 2.0]  # vanilla is not shown but still the baseline
    assert not (results / "other" / "leaderboard.csv").exists()
    assert f"report: {results / 'toy' / 'report.html'}" in capsys.readouterr().out


def test_a_dataset_without_the_pair_is_skipped(results):
    assert main(["report", "--results-dir", str(results), "--pair", PAIR_B]) == 0
    assert set(pd.read_csv(results / "toy" / "leaderboard.csv")["pair"]) == {PAIR_B}
    assert not (results / "other" / "leaderboard.csv").exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--dataset", "toy,cifar100", "no results for dataset 'cifar100' in {root}; expected one of: other, toy"),
        ("--pair", "resnet56-resnet20", f"no results for pair 'resnet56-resnet20' in {{root}}; "
                                        f"expected one of: {PAIR_A}, {PAIR_B}"),
        ("--losses", "kd,dkd,ab", "no results for loss 'dkd', 'ab' in {root}; expected one of: crd, kd, vanilla"),
    ],
)
def test_unknown_name_in_a_filter_is_a_config_error(results, capsys, option, value, message):
    before = sorted(results.rglob("*"))
    assert main(["report", "--results-dir", str(results), option, value]) == 2
    assert capsys.readouterr().err == f"error: {message.format(root=results)}\n"
    assert sorted(results.rglob("*")) == before


def test_no_results_is_a_config_error(tmp_path, capsys):
    assert main(["report", "--results-dir", str(tmp_path / "missing")]) == 2
    assert "`bench run` writes them" in capsys.readouterr().err
