"""A report leaves collapsed runs out of its means, tests and ranks unless asked, and lists them apart."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.report.aggregate import leaderboard
from bench.report.runs import load_runs
from report.conftest import make_run


@pytest.fixture
def runs(write_runs) -> pd.DataFrame:
    """Three seeds each; kd's seed 2 is recorded as collapsed, vanilla's seed 2 is an older row at chance."""
    rows = [make_run("vanilla", seed, best, best) for seed, best in enumerate([70.0, 71.0])]
    rows.append(make_run("vanilla", 2, 10.0, 10.0, last_top5=50.0))
    rows += [make_run("kd", seed, best, best, collapsed=False, collapse_reason="") for seed, best in enumerate([74.0, 75.0])]
    rows.append(make_run("kd", 2, 60.0, 60.0, collapsed=True, collapse_reason="one class predicted for 95.0 %"))
    rows += [make_run("at", seed, best, best) for seed, best in enumerate([72.0, 72.5, 73.0])]
    return load_runs(write_runs(rows) / "toy" / "runs.csv")


def test_collapsed_runs_are_left_out_of_means_tests_and_ranks(runs):
    assert runs.set_index(["loss", "seed"])["collapsed"].to_dict() == {
        ("vanilla", 0): False, ("vanilla", 1): False, ("vanilla", 2): True, ("kd", 0): False, ("kd", 1): False,
        ("kd", 2): True, ("at", 0): False, ("at", 1): False, ("at", 2): False}
    board = leaderboard(runs).set_index("loss")
    assert board.loc["kd", "selected_top1_mean"] == pytest.approx(74.5) and board.loc["kd", "n_collapsed"] == 1
    assert board.loc["vanilla", "selected_top1_mean"] == pytest.approx(70.5) and board.loc["vanilla", "n_seeds"] == 2
    assert board.loc["at", "delta_vanilla"] == pytest.approx(((72 - 70) + (72.5 - 71)) / 2)  # seeds 0, 1 paired
    assert board["rank"].to_dict() == {"kd": 1, "at": 2, "vanilla": 3}

    kept = leaderboard(runs, include_collapsed=True).set_index("loss")
    assert kept.loc["kd", "selected_top1_mean"] == pytest.approx((74 + 75 + 60) / 3) and kept.loc["kd", "n_collapsed"] == 0
    assert kept.loc["at", "delta_vanilla"] == pytest.approx(((72 - 70) + (72.5 - 71) + (73 - 10)) / 3)
    assert kept["rank"].to_dict() == {"at": 1, "kd": 2, "vanilla": 3}


def test_bench_report_lists_collapsed_runs_apart_and_keeps_them_when_asked(write_runs, cli):
    root = write_runs([make_run("kd", 0, 74.0, 74.0), make_run("kd", 1, 10.0, 10.0, last_top5=50.0),
                       make_run("vanilla", 0, 70.0, 70.0), make_run("vanilla", 1, 71.0, 71.0)])
    assert cli("report", "--results-dir", root).code == 0
    markdown = (root / "toy" / "leaderboard.md").read_text()
    assert "## Collapsed runs" in markdown and "Collapsed (at chance or one class predicted" in markdown
    assert "kd (resnet32x4-resnet8x4, standard: 1 seed)" in markdown
    board = pd.read_csv(root / "toy" / "leaderboard.csv").set_index("loss")
    assert board.loc["kd", "selected_top1_mean"] == pytest.approx(74.0) and board.loc["kd", "n_seeds"] == 1

    assert cli("report", "--results-dir", root, "--include-collapsed").code == 0
    board = pd.read_csv(root / "toy" / "leaderboard.csv").set_index("loss")
    assert board.loc["kd", "selected_top1_mean"] == pytest.approx(42.0) and board.loc["kd", "n_seeds"] == 2
    assert "## Collapsed runs" not in (root / "toy" / "leaderboard.md").read_text()
