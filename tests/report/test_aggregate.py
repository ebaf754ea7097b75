"""Leaderboard math on a hand-made runs.csv; every expected number is worked out by hand below."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bench.report.aggregate import leaderboard
from bench.report.runs import load_runs

# best top-1 per seed (seed = position); `at` seed 2 diverges after reaching 76.0 at its best epoch
BEST = {"vanilla": [70.0, 71.0, 72.0], "kd": [72.0, 74.0, 73.0], "crd": [75.0, 77.0], "fitnet": [71.5]}


@pytest.fixture
def board(run_row, write_runs) -> pd.DataFrame:
    rows = [run_row(loss, seed, best) for loss, bests in BEST.items() for seed, best in enumerate(bests)]
    rows += [run_row("at", 0, 73.0), run_row("at", 1, 75.0), run_row("at", 2, 76.0, diverged=True)]
    root = write_runs(rows)
    return leaderboard(load_runs(root / "toy" / "runs.csv")).set_index("loss")


def test_mean_and_sample_std_over_seeds(board):
    assert board.loc["vanilla", "best_top1_mean"] == pytest.approx((70 + 71 + 72) / 3)
    assert board.loc["vanilla", "best_top1_std"] == pytest.approx(1.0)  # sqrt((1 + 0 + 1) / (3 - 1))
    assert board.loc["crd", "best_top1_mean"] == pytest.approx(76.0)
    assert board.loc["crd", "best_top1_std"] == pytest.approx(math.sqrt((1 + 1) / (2 - 1)))
    assert board.loc["kd", "last_top1_mean"] == pytest.approx(73.0 - 0.5)  # the factory's last = best - 0.5
    assert board.loc["kd", "selected_top5_mean"] == pytest.approx(93.0)  # best + 20
    assert board.loc["kd", "n_seeds"] == 3


def test_delta_is_paired_on_the_seeds_both_losses_finished(board):
    assert board.loc["kd", "delta_vanilla"] == pytest.approx(((72 - 70) + (74 - 71) + (73 - 72)) / 3)
    # crd has seeds 0 and 1 only: (75 - 70 + 77 - 71) / 2 = 5.5, not 76 - 71 = 5
    assert board.loc["crd", "delta_vanilla"] == pytest.approx(5.5)
    assert board.loc["crd", "delta_kd"] == pytest.approx(((75 - 72) + (77 - 74)) / 2)
    assert math.isnan(board.loc["vanilla", "delta_vanilla"])  # a baseline is not tested against itself


def test_rank_within_the_pair_by_mean_best_top1(board):
    # crd 76, at 74, kd 73, fitnet 71.5, vanilla 71
    assert board["rank"].to_dict() == {"crd": 1, "at": 2, "kd": 3, "fitnet": 4, "vanilla": 5}
    assert list(board.index) == ["crd", "at", "kd", "fitnet", "vanilla"]


def test_diverged_run_is_counted_not_averaged(board):
    assert board.loc["at", "n_seeds"] == 2
    assert board.loc["at", "n_diverged"] == 1
    assert board.loc["at", "best_top1_mean"] == pytest.approx((73 + 75) / 2)  # the diverged 76.0 stays out
    assert board.loc["at", "delta_vanilla"] == pytest.approx(((73 - 70) + (75 - 71)) / 2)


def test_single_seed_has_no_std(board):
    assert board.loc["fitnet", "n_seeds"] == 1
    assert math.isnan(board.loc["fitnet", "best_top1_std"])
    assert math.isnan(board.loc["fitnet", "last_top1_std"])


def test_a_second_recipe_is_its_own_row_and_comparison(run_row, write_runs):
    rows = [run_row("vanilla", 0, 70.0), run_row("kd", 0, 72.0), run_row("kd", 1, 73.0, protocol="fast", epochs=2)]
    table = leaderboard(load_runs(write_runs(rows) / "toy" / "runs.csv"))
    fast = table[table["protocol"] == "fast"].iloc[0]
    assert (fast["epochs"], fast["rank"], fast["n_seeds"]) == (2, 1, 1)
    assert math.isnan(fast["delta_vanilla"])  # no vanilla under the fast protocol
    standard_kd = table[(table["protocol"] == "standard") & (table["loss"] == "kd")].iloc[0]
    assert standard_kd["delta_vanilla"] == pytest.approx(2.0)
    assert table["recipe_hash"].nunique() == 3


def test_all_seeds_diverged_gives_no_mean_and_no_rank(run_row, write_runs):
    rows = [run_row("vanilla", 0, 70.0), run_row("ab", 0, 71.0, diverged=True)]
    ab = leaderboard(load_runs(write_runs(rows) / "toy" / "runs.csv")).set_index("loss").loc["ab"]
    assert (ab["n_seeds"], ab["n_diverged"]) == (0, 1)
    assert math.isnan(ab["best_top1_mean"]) and pd.isna(ab["rank"])


def test_loss_filter_keeps_the_baselines_for_delta(run_row, write_runs):
    rows = [run_row(loss, seed, best) for loss, bests in BEST.items() for seed, best in enumerate(bests)]
    table = leaderboard(load_runs(write_runs(rows) / "toy" / "runs.csv"), losses=["crd"]).set_index("loss")
    assert list(table.index) == ["crd"]
    assert table.loc["crd", "delta_vanilla"] == pytest.approx(5.5)
    assert table.loc["crd", "rank"] == 1


def test_a_run_recorded_twice_counts_once(run_row, write_runs):
    rows = [run_row("kd", 0, 70.0), {**run_row("kd", 0, 71.0), "finished_at": "2025-02-01T00:00:00+00:00"}]
    table = leaderboard(load_runs(write_runs(rows) / "toy" / "runs.csv"))
    assert (table.loc[0, "n_seeds"], table.loc[0, "best_top1_mean"]) == (1, 71.0)
