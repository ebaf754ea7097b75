"""Paired statistics over seeds: which differences between losses are real, and how sure a rank is.

Runs of one seed share the student's initial weights and its batch order across the losses of a
comparison, so a loss is compared with a baseline *paired by seed*: the per-seed differences carry
the loss's effect without the seed's luck. Every test comes from scipy, statsmodels or
scikit-posthocs; this module only decides what is paired with what.

- ``paired_table``: per recipe and baseline, selected and last epoch: mean Δ, its t-based 95% CI, the
  paired t-test (and Wilcoxon signed-rank from ``MIN_WILCOXON`` seeds), Holm-corrected across the
  losses of the leaderboard, a verdict, and the seeds a Δ of ``EFFECT`` points would need.
- ``rank_intervals``: each recipe's rank interval from resampling seeds (bootstrap).
- ``friedman_over_pairs``: across pairs, the Friedman test and Nemenyi p-values for a CD diagram.
- ``protocol_agreement``: Kendall's τ between two protocols' rankings, with a bootstrap interval.

Fewer than two shared seeds give no test at all, never a made-up p-value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scikit_posthocs
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from bench.report.keys import COMPARISON, RECIPE

ALPHA = 0.05
EFFECT = 0.5  # top-1 points a user wants resolved ...
POWER = 0.8  # ... with this probability
MIN_WILCOXON = 6  # below this the exact signed-rank test cannot reach p < 0.05 (2 / 2**5)
RESAMPLES = 2000
SEED = 0  # the bootstrap's generator: the same runs always give the same intervals
# the epochs tests compare: the validation-selected one (bench.report.runs: the best on test for runs
# without a validation split, in comparisons of their own), then the last; the first is the headline
EPOCHS = {"selected": "selected_top1", "last": "last_top1"}
HEADLINE = EPOCHS["selected"]

BETTER, WORSE, SAME, NO_TEST = "better", "worse", "indistinguishable", "no test"


@dataclass(frozen=True)
class PairedTest:
    """One loss against one baseline over the seeds both finished (a, b: their numbers per seed)."""

    n: int
    delta: float  # mean of a - b
    ci_low: float
    ci_high: float
    sd: float  # sample std of the per-seed differences
    p_t: float  # paired t-test, two-sided; NaN where there is no test
    p_wilcoxon: float  # Wilcoxon signed-rank, exact where scipy can; NaN below MIN_WILCOXON seeds
    seeds_needed: float  # seeds resolving EFFECT at POWER, from sd; NaN without a spread

    @property
    def why_no_test(self) -> str | None:
        if self.n < 2:
            return f"{self.n} shared seed{'s' * (self.n != 1)}: no test"
        if self.sd == 0:
            return "no spread between seeds: no test"
        return None


def paired_test(a: np.ndarray, b: np.ndarray) -> PairedTest:
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = a - b
    n = len(diff)
    delta = float(diff.mean()) if n else math.nan
    sd = float(diff.std(ddof=1)) if n >= 2 else math.nan
    if n < 2 or sd == 0:
        return PairedTest(n, delta, math.nan, math.nan, sd, math.nan, math.nan, math.nan)
    t = stats.ttest_rel(a, b)
    ci = t.confidence_interval(1 - ALPHA)
    p_wilcoxon = float(stats.wilcoxon(a, b).pvalue) if n >= MIN_WILCOXON and diff.any() else math.nan
    return PairedTest(n, delta, float(ci.low), float(ci.high), sd, float(t.pvalue), p_wilcoxon, seeds_needed(sd))


SCANNED_SEEDS = 100


def seeds_needed(sd: float) -> float:
    """Seeds for a two-sided paired t-test at ALPHA to detect a mean Δ of EFFECT with POWER, given ``sd``."""
    effect_size = EFFECT / sd
    power = TTestPower()
    for seeds in range(2, SCANNED_SEEDS + 1):  # counted up where it is small: the root finder can miss there
        if power.power(effect_size, nobs=seeds, alpha=ALPHA) >= POWER:
            return float(seeds)
    return float(math.ceil(power.solve_power(effect_size=effect_size, alpha=ALPHA, power=POWER)))


def baseline_runs(runs: pd.DataFrame, loss: str) -> pd.DataFrame:
    """The runs of ``loss``'s recipe with the most seeds (ties: the first hash), or none."""
    own = runs[runs["loss"] == loss]
    if own.empty:
        return own
    counts = own.groupby("recipe_hash").size()
    chosen = counts[counts == counts.max()].index.min()
    return own[own["recipe_hash"] == chosen]


TEST_COLUMNS = ["n_pairs", "delta", "ci_low", "ci_high", "sd", "p_t", "p_wilcoxon", "seeds_needed"]
PAIRED_COLUMNS = [*RECIPE, "baseline", "epoch", *TEST_COLUMNS, "p_t_holm", "p_wilcoxon_holm", "verdict"]


def paired_table(finished: pd.DataFrame, baselines: tuple[str, ...], losses: list[str] | None = None) -> pd.DataFrame:
    """One row per (recipe, baseline, epoch) over finished runs; Holm across the losses shown.

    A baseline is not compared with itself; ``losses`` (when given) limits the rows, and so the
    family Holm corrects over, to the losses the leaderboard shows.
    """
    rows = []
    for key, runs in finished.groupby(COMPARISON, dropna=False, sort=False):
        for baseline in baselines:
            base = baseline_runs(runs, baseline)
            if base.empty:
                continue
            base_recipe = base["recipe_hash"].iloc[0]
            for (loss, recipe), own in runs.groupby(["loss", "recipe_hash"], sort=False):
                if recipe == base_recipe or (losses and loss not in losses):
                    continue
                both = own.merge(base[["seed", *EPOCHS.values()]], on="seed", suffixes=("", "_base"))
                for epoch, metric in EPOCHS.items():
                    shared = both.dropna(subset=[metric, f"{metric}_base"])
                    test = paired_test(shared[metric], shared[f"{metric}_base"])
                    rows.append([*key, loss, recipe, baseline, epoch, test.n, test.delta, test.ci_low, test.ci_high,
                                 test.sd, test.p_t, test.p_wilcoxon, test.seeds_needed])
    table = pd.DataFrame(rows, columns=[*RECIPE, "baseline", "epoch", *TEST_COLUMNS])
    family = [*COMPARISON, "baseline", "epoch"]
    table["p_t_holm"] = table.groupby(family, dropna=False)["p_t"].transform(holm)
    table["p_wilcoxon_holm"] = table.groupby(family, dropna=False)["p_wilcoxon"].transform(holm)
    table["verdict"] = [verdict(d, p) for d, p in zip(table["delta"], table["p_t_holm"])]
    return table[PAIRED_COLUMNS]


def holm(p_values: pd.Series) -> pd.Series:
    """Holm-adjusted p-values over the tests that exist; NaN (no test) stays NaN and is not counted."""
    adjusted = pd.Series(np.nan, index=p_values.index)
    present = p_values.notna()
    if present.any():
        adjusted[present] = multipletests(p_values[present], alpha=ALPHA, method="holm")[1]
    return adjusted


def verdict(delta: float, p_holm: float) -> str:
    if pd.isna(p_holm):
        return NO_TEST
    if p_holm >= ALPHA:
        return SAME
    return BETTER if delta > 0 else WORSE


def rank_intervals(finished: pd.DataFrame, recipes: pd.DataFrame) -> pd.DataFrame:
    """``rank_low`` / ``rank_high``: the 95% bootstrap interval of each recipe's rank by mean selected top-1.

    Seeds are resampled with replacement (the whole seed: every loss of it together, as they are
    paired); a recipe lacking every drawn seed keeps its observed mean. A recipe with one seed has
    nothing to resample and gets no interval, and a comparison with one seed gives none at all.
    ``recipes`` holds the leaderboard's rows (RECIPE columns) in the order ranks are wanted.
    """
    out = pd.DataFrame(np.nan, index=recipes.index, columns=["rank_low", "rank_high"])
    for _, rows in recipes.groupby(COMPARISON, dropna=False, sort=False):
        runs = finished.merge(rows[RECIPE], on=RECIPE)
        grid = runs.pivot_table(index="seed", columns="recipe_hash", values=HEADLINE, aggfunc="mean")
        grid = grid.reindex(columns=rows["recipe_hash"])
        seeds = grid.notna().sum()
        ranked = (seeds > 0).to_numpy()
        if len(grid) < 2 or ranked.sum() < 2:
            continue
        values = grid.to_numpy(float)[:, ranked]
        observed = np.nanmean(values, axis=0)

        def ranks(sample, axis):  # sample: (recipes, resamples, seeds)
            return stats.rankdata(-_resampled_means(sample, axis, observed), axis=0, method="min").astype(float)

        interval = stats.bootstrap((values,), ranks, vectorized=True, n_resamples=RESAMPLES, method="percentile",
                                   rng=SEED).confidence_interval
        index = rows.index[ranked]
        enough = seeds[ranked].to_numpy() >= 2
        out.loc[index[enough], "rank_low"] = np.floor(interval.low[enough])
        out.loc[index[enough], "rank_high"] = np.ceil(interval.high[enough])
    return out.astype("Int64")


@dataclass(frozen=True)
class Friedman:
    """Across pairs (blocks) under one setting: do the losses (treatments) differ at all?"""

    setting: str
    pairs: list[str]
    statistic: float
    p: float
    mean_ranks: pd.Series  # loss -> mean rank over pairs (1 = best)
    nemenyi: pd.DataFrame  # loss x loss post-hoc p-values


def friedman_over_pairs(shown: pd.DataFrame) -> list[Friedman]:
    """Per setting with ≥ 2 pairs: Friedman over the losses every pair has (≥ 3), on mean selected top-1.

    A loss with several recipes in a comparison enters with its best-ranked one.
    """
    results = []
    for setting, rows in shown.dropna(subset=[f"{HEADLINE}_mean"]).groupby("setting", sort=False):
        best = rows.sort_values("rank", kind="stable").drop_duplicates(["pair", "loss"])
        grid = best.pivot(index="pair", columns="loss", values=f"{HEADLINE}_mean").dropna(axis=1)
        if len(grid) < 2 or grid.shape[1] < 3:
            continue
        test = stats.friedmanchisquare(*(grid[loss] for loss in grid.columns))
        mean_ranks = grid.rank(axis=1, ascending=False).mean()
        nemenyi = scikit_posthocs.posthoc_nemenyi_friedman(grid.to_numpy())
        nemenyi.index = nemenyi.columns = grid.columns
        statistic, p = float(test.statistic), float(test.pvalue)
        results.append(Friedman(setting, list(grid.index), statistic, p, mean_ranks, nemenyi))
    return results


@dataclass(frozen=True)
class Agreement:
    """Kendall's τ between the rankings of the same losses under two protocols."""

    losses: list[str]
    tau: float
    low: float  # 95% bootstrap interval; NaN when a protocol has fewer than two seeds
    high: float
    seeds: tuple[int, int]  # seeds every loss finished, per protocol
    means: tuple[pd.Series, pd.Series]  # mean selected top-1 per loss that τ ranks, per protocol


def protocol_agreement(a: pd.DataFrame, b: pd.DataFrame) -> Agreement | None:
    """τ between two comparisons' rankings by mean selected top-1 over the losses both have (≥ 3).

    ``a`` and ``b`` are finished runs of one comparison each (one recipe per loss). Only the seeds
    every shared loss finished count, so a seed trained for a few losses gives no interval; the two
    protocols' runs are independent, so each one's seeds are resampled on their own.
    """
    grids = [runs.pivot_table(index="seed", columns="loss", values=HEADLINE, aggfunc="mean") for runs in (a, b)]
    losses = sorted(set(grids[0].columns) & set(grids[1].columns))
    if len(losses) < 3:
        return None
    complete = [grid[losses].dropna() for grid in grids]  # the seeds every shared loss finished
    observed = [np.nanmean((own if len(own) else grid[losses]).to_numpy(float), axis=0)
                for own, grid in zip(complete, grids)]
    tau = float(stats.kendalltau(*observed).statistic)
    grids = [own.to_numpy(float) for own in complete]
    seeds, means = (len(grids[0]), len(grids[1])), tuple(pd.Series(o, index=losses) for o in observed)
    if min(seeds) < 2:
        return Agreement(losses, tau, math.nan, math.nan, seeds, means)

    def taus(sample_a, sample_b, axis):  # each: (losses, resamples, seeds)
        means_a, means_b = (_resampled_means(s, axis, o) for s, o in zip((sample_a, sample_b), observed))
        return np.array([stats.kendalltau(x, y).statistic for x, y in zip(means_a.T, means_b.T)])

    interval = stats.bootstrap(tuple(grids), taus, vectorized=True, n_resamples=RESAMPLES, method="percentile",
                               rng=SEED).confidence_interval
    return Agreement(losses, tau, float(interval.low), float(interval.high), seeds, means)


def _resampled_means(sample: np.ndarray, axis: int, observed: np.ndarray) -> np.ndarray:
    """Mean over the drawn seeds a recipe has; its observed mean where it has none of them."""
    present = np.isfinite(sample)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(present, sample, 0).sum(axis) / present.sum(axis)
    return np.where(np.isfinite(means), means, observed[:, None])
