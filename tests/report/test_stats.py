"""Paired statistics on hand-made runs; every expected number comes from a closed form or an enumeration here.

References: Student's t with 1 or 2 degrees of freedom has a closed-form CDF (df=1: Cauchy,
F(t) = 1/2 + atan(t)/π; df=2: F(t) = 1/2 + t / (2√(2 + t²))); Holm (1979) step-down written out;
the exact signed-rank null by enumerating all 2^n sign patterns; power from the noncentral t.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from bench.report import build_report
from bench.report.aggregate import leaderboard
from bench.report.display import comparison_notes, labelled
from bench.report.runs import load_runs
from bench.report.stats import friedman_over_pairs, protocol_agreement, seeds_needed

VANILLA = [70.0, 71.0, 72.0]
DELTAS = {"up": [5.0, 5.1, 4.9], "down": [-3.0, -3.2, -2.9], "flat": [2.0, 3.0, 1.0], "kd": [0.5, 1.0, 2.0]}
LAST_UP = [0.5, -0.5, 0.2]  # "up" at its last epoch: no longer clearly better


def t_df2(deltas):
    """Mean, 95% CI and two-sided p of a paired t-test on 3 differences, from the df=2 closed form."""
    d = np.asarray(deltas, float)
    mean, se = d.mean(), d.std(ddof=1) / math.sqrt(3)
    t = mean / se
    q = math.sqrt(2 * 0.95**2 / (1 - 0.95**2))  # F(q) = 0.975  <=>  q / sqrt(2 + q^2) = 0.95
    return mean, mean - q * se, mean + q * se, 1 - abs(t) / math.sqrt(2 + t * t)


def t_df1(deltas):
    d = np.asarray(deltas, float)
    mean, se = d.mean(), d.std(ddof=1) / math.sqrt(2)
    q = math.tan(math.pi * 0.475)  # F(q) = 0.975 for the Cauchy distribution
    return mean, mean - q * se, mean + q * se, 1 - 2 / math.pi * math.atan(abs(mean / se))


def holm_by_hand(p):
    order = np.argsort(p)
    adjusted, running = np.empty(len(p)), 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (len(p) - i) * p[j]))
        adjusted[j] = running
    return adjusted


@pytest.fixture(scope="module")
def board(run_row, write_runs) -> pd.DataFrame:
    rows = [run_row("vanilla", seed, best) for seed, best in enumerate(VANILLA)]
    for loss, deltas in DELTAS.items():
        for seed, (base, delta) in enumerate(zip(VANILLA, deltas)):
            last = base - 0.5 + (LAST_UP[seed] if loss == "up" else delta)
            rows.append(run_row(loss, seed, base + delta, last))
    return leaderboard(load_runs(write_runs(rows) / "toy" / "runs.csv")).set_index("loss")


def test_mean_delta_ci_and_paired_t_against_closed_form(board):
    for loss, deltas in DELTAS.items():
        mean, low, high, _ = t_df2(deltas)
        assert board.loc[loss, "delta_vanilla"] == pytest.approx(mean)
        assert board.loc[loss, "ci_low_vanilla"] == pytest.approx(low)
        assert board.loc[loss, "ci_high_vanilla"] == pytest.approx(high)


def test_holm_across_the_losses_of_the_comparison(board):
    losses = list(DELTAS)
    raw = np.array([t_df2(DELTAS[loss])[3] for loss in losses])
    assert board.loc[losses, "p_raw_vanilla"].to_numpy(float) == pytest.approx(raw)
    assert board.loc[losses, "p_holm_vanilla"].to_numpy(float) == pytest.approx(holm_by_hand(raw))
    assert (board.loc[losses, "family_vanilla"] == 4).all()
    assert raw[losses.index("flat")] > 0.05  # so its mark below is the test's, not an artefact


def test_marks_better_worse_not_significant_for_best_and_last(board):
    assert board.loc["up", "vs_vanilla"] == "better"
    assert board.loc["down", "vs_vanilla"] == "worse"
    assert board.loc["flat", "vs_vanilla"] == "not significant"
    assert board.loc["up", "vs_vanilla_last"] == "not significant"
    assert board.loc["down", "vs_vanilla_last"] == "worse"


def test_wilcoxon_needs_six_seeds(board):
    assert not [c for c in board.columns if c.startswith("p_wilcoxon")]  # 3 seeds: no signed-rank test, no column


def test_wilcoxon_exact_on_six_seeds(run_row, write_runs):
    deltas = [1.0, 2.0, 3.0, 4.0, 5.0, -0.5]
    rows = [run_row("vanilla", seed, 70.0 + seed) for seed in range(6)]
    rows += [run_row("kd", seed, 70.0 + seed + d) for seed, d in enumerate(deltas)]
    kd = leaderboard(load_runs(write_runs(rows) / "toy" / "runs.csv")).set_index("loss").loc["kd"]
    ranks = scipy_stats.rankdata(np.abs(deltas))
    w_minus = ranks[np.array(deltas) < 0].sum()
    sums = [sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product((0, 1), repeat=6)]
    exact = 2 * np.mean([s <= w_minus for s in sums])  # symmetric null: P(W- <= w) doubled
    assert exact == pytest.approx(2 * 2 / 64)
    assert kd["p_wilcoxon_raw_vanilla"] == pytest.approx(exact)
    assert kd["p_wilcoxon_holm_vanilla"] == pytest.approx(exact)  # one test in the family: Holm leaves it as is


def test_one_seed_gives_no_test_and_says_so(run_row, write_runs):
    root = write_runs([run_row("vanilla", 0, 70.0), run_row("kd", 0, 72.0), run_row("crd", 0, 73.0)])
    build_report(root, console=False)
    table = pd.read_csv(root / "toy" / "leaderboard.csv").set_index("loss")
    assert table.loc["crd", "delta_vanilla"] == pytest.approx(3.0)
    for column in ("ci_low_vanilla", "p_raw_vanilla", "p_holm_kd", "seed_ranks", "seeds_needed_vanilla"):
        assert table[column].isna().all(), column
    assert (table.loc[["crd", "kd"], "vs_vanilla"] == "no test").all()
    text = (root / "toy" / "leaderboard.md").read_text()
    assert "1 seed per loss: no paired test" in text
    crd = next(line for line in text.splitlines() if "**crd**" in line)
    assert "| +3.00 | n/a | n/a |" in crd  # Δ, CI, marks


def test_missing_seed_pairs_only_shared_seeds(run_row, write_runs):
    rows = [run_row("vanilla", seed, best) for seed, best in enumerate(VANILLA)]
    rows += [run_row("kd", 0, 72.5), run_row("kd", 2, 73.0), run_row("kd", 3, 99.0)]  # no seed 1; seed 3 unpaired
    kd = leaderboard(load_runs(write_runs(rows) / "toy" / "runs.csv"), baselines=("vanilla",)).set_index("loss").loc["kd"]
    mean, low, high, p = t_df1([2.5, 1.0])
    assert (kd["delta_vanilla"], kd["ci_low_vanilla"], kd["ci_high_vanilla"]) == pytest.approx((mean, low, high))
    assert kd["p_raw_vanilla"] == pytest.approx(p)


def test_diverged_run_is_excluded_from_the_test_and_counted(run_row, write_runs):
    rows = [run_row("vanilla", seed, best) for seed, best in enumerate(VANILLA)]
    rows += [run_row("at", 0, 71.0), run_row("at", 1, 74.0), run_row("at", 2, 90.0, diverged=True)]
    at = leaderboard(load_runs(write_runs(rows) / "toy" / "runs.csv"), baselines=("vanilla",)).set_index("loss").loc["at"]
    assert (at["n_seeds"], at["n_diverged"]) == (2, 1)
    assert at["p_raw_vanilla"] == pytest.approx(t_df1([1.0, 3.0])[3])


def power(n, sd, alpha=0.05):
    """Two-sided paired t-test for a mean difference of 0.5, from the noncentral t."""
    critical, shift = scipy_stats.t.ppf(1 - alpha / 2, n - 1), 0.5 / sd * math.sqrt(n)
    return scipy_stats.nct.sf(critical, n - 1, shift) + scipy_stats.nct.cdf(-critical, n - 1, shift)


def smallest_n(sd, alpha):
    return next(n for n in range(2, 10_000) if power(n, sd, alpha) >= 0.8)


def test_seeds_needed_reaches_the_power_one_seed_fewer_does_not():
    for sd in (0.3, 1.0, 2.5):
        n = int(seeds_needed(sd))
        assert power(n, sd) >= 0.8 > power(n - 1, sd)
    assert seeds_needed(1.0) == 34


def test_seeds_needed_is_at_the_level_of_the_corrected_marks_with_the_sds_interval(board):
    """Four losses against vanilla: the smallest corrected p must reach 0.05 / 4; the SD of 3 seeds is
    uncertain by the χ² interval with 2 df (0.52× to 6.3×), and so is the count."""
    assert board.loc["flat", "paired_sd_vanilla"] == pytest.approx(1.0)  # sd of [2, 3, 1]
    low_sd, high_sd = math.sqrt(2 / scipy_stats.chi2.ppf(0.975, 2)), math.sqrt(2 / scipy_stats.chi2.ppf(0.025, 2))
    assert (low_sd, high_sd) == pytest.approx((0.52, 6.28), abs=0.01)
    flat = board.loc["flat"]
    expected = [smallest_n(sd, 0.05 / 4) for sd in (1.0, low_sd, high_sd)]
    assert [flat["seeds_needed_vanilla"], flat["seeds_needed_low_vanilla"], flat["seeds_needed_high_vanilla"]] == expected
    assert expected[0] > 34  # more than at the uncorrected 0.05


def test_ranks_by_seed_are_each_seeds_own_ranking(run_row, write_runs):
    """Three seeds give ten distinct bootstrap resamples; what is shown is each seed's ranking itself."""
    values = {"vanilla": [70.0, 74.0, 71.0], "kd": [73.0, 71.0, 72.0], "at": [72.0, 72.5, 70.0], "solo": [60.0]}
    rows = [run_row(loss, seed, best) for loss, bests in values.items() for seed, best in enumerate(bests)]
    table = leaderboard(load_runs(write_runs(rows) / "toy" / "runs.csv")).set_index("loss")
    grid = pd.DataFrame({loss: bests for loss, bests in values.items() if loss != "solo"})
    grid["solo"] = [60.0, np.nan, np.nan]
    ranks = scipy_stats.rankdata(-grid.to_numpy(), axis=1, method="min", nan_policy="omit")
    for column, loss in enumerate(["vanilla", "kd", "at"]):
        assert table.loc[loss, "seed_ranks"] == " · ".join(str(int(r)) for r in ranks[:, column])
    assert pd.isna(table.loc["solo", "seed_ranks"])  # one seed: its rank is the rank
    assert "rank_low" not in table and "rank_high" not in table


def test_friedman_against_the_rank_formula(run_row, write_runs):
    best = {"p1": {"a": 75, "b": 74, "c": 73, "d": 70}, "p2": {"a": 76, "b": 72, "c": 74, "d": 71},
            "p3": {"a": 77, "b": 75, "c": 74, "d": 73}, "p4": {"a": 74, "b": 73, "c": 72, "d": 75}}
    rows = [run_row(loss, 0, value, pair=f"t{pair}-s{pair}") for pair, losses in best.items()
            for loss, value in losses.items()]
    root = write_runs(rows)
    build_report(root, console=False)
    ranks = pd.DataFrame(best).T.rank(axis=1, ascending=False)
    n, k = ranks.shape
    chi2 = 12 * n / (k * (k + 1)) * ((ranks.mean() - (k + 1) / 2) ** 2).sum()
    p = math.erfc(math.sqrt(chi2 / 2)) + math.sqrt(2 * chi2 / math.pi) * math.exp(-chi2 / 2)  # chi2 sf, 3 df
    [result] = friedman_over_pairs(labelled(leaderboard(load_runs(root / "toy" / "runs.csv"))))
    assert (result.statistic, result.p) == pytest.approx((chi2, p))
    assert result.mean_ranks.to_dict() == pytest.approx(ranks.mean().to_dict())
    assert f"Friedman χ² = {chi2:.2f}" in (root / "toy" / "leaderboard.md").read_text()
    stem = root / "toy" / "plots" / "critical_difference_standard_3ep"
    assert stem.with_suffix(".png").read_bytes().startswith(b"\x89PNG") and "<svg" in stem.with_suffix(".svg").read_text()


def test_kendall_tau_between_protocols_by_hand(run_row, write_runs):
    fast = {"a": 80, "b": 79, "c": 78, "d": 77}  # a > b > c > d
    slow = {"a": 90, "b": 88, "c": 89, "d": 87}  # a > c > b > d: one discordant pair of six
    rows = [run_row(loss, seed, value + 0.1 * seed, protocol="fast") for loss, value in fast.items() for seed in (0, 1)]
    rows += [run_row(loss, seed, value + 0.1 * seed, protocol="slow") for loss, value in slow.items() for seed in (0, 1)]
    runs = load_runs(write_runs(rows) / "toy" / "runs.csv")
    result = protocol_agreement(runs[runs["protocol"] == "fast"], runs[runs["protocol"] == "slow"])
    assert result.tau == pytest.approx((5 - 1) / 6)
    assert math.isnan(result.low)  # four losses: too few to resample
    assert result.within == ([1.0], [1.0])  # each protocol's two seeds rank alike
    one_seed = protocol_agreement(runs[runs["protocol"] == "fast"], runs[(runs["protocol"] == "slow") & (runs["seed"] == 0)])
    assert one_seed.tau == pytest.approx(4 / 6) and one_seed.within == ([1.0], [])


def test_seeds_needed_note_pools_the_paired_spread(board):
    shown = labelled(board.reset_index())
    sds = [np.std(DELTAS[loss], ddof=1) for loss in DELTAS]
    pooled = math.sqrt(np.mean(np.square(sds)))
    [note] = comparison_notes(shown).values()
    assert f"Paired SD of Δ selected top-1 to vanilla: {pooled:.2f} points (pooled over 4 losses)" in note
    assert f"→ {smallest_n(pooled, 0.05 / 4)} [" in note and "at α / 4 = 0.0125" in note


def test_a_tiny_paired_spread_needs_few_seeds_not_a_failed_solve():
    """At SD 0.01 statsmodels' root finder returns NaN (it starts at 10 seeds); the count is scanned there."""
    assert seeds_needed(0.01) in (2.0, 3.0)


def test_seeds_needed_never_rises_as_the_spread_shrinks_at_a_corrected_level():
    """At α / 43 statsmodels' power is NaN for large effects at 6-13 seeds; counting past those once gave
    a smaller SD more seeds (13 at SD 0.34, 15 at its lower 95% bound)."""
    sds = np.linspace(0.1, 1.0, 46)
    needed = [seeds_needed(sd, 0.05 / 43) for sd in sds]
    assert all(a <= b for a, b in zip(needed, needed[1:])), needed
    assert seeds_needed(0.177, 0.05 / 43) <= seeds_needed(0.34, 0.05 / 43)
