"""Paired statistics over seeds: which differences between losses are real, and how sure a rank is.

Runs of one seed share the student's initial weights and its batch order across the losses of a
comparison, so a loss is compared with a baseline *paired by seed* and by teacher: the per-seed
differences carry the loss's effect without the seed's luck, and two runs that distilled from
different teacher weights are never paired. Every test comes from scipy, statsmodels or
scikit-posthocs; this module only decides what is paired with what.

- ``paired_table``: per recipe and baseline, selected and last epoch: mean Δ, its t-based 95% CI, the
  paired t-test (and Wilcoxon signed-rank from ``MIN_WILCOXON`` seeds), raw and corrected (Holm or
  Benjamini–Hochberg) over every loss of the comparison, a verdict, and the seeds a Δ of ``EFFECT``
  points would need at the level the corrected verdicts use.
- ``seed_ranks``: each recipe's rank within each seed (with 3 seeds no interval reaches 95%).
- ``friedman_over_pairs``: across pairs, the Friedman test and Nemenyi p-values for a CD diagram.
- ``protocol_agreement``: Kendall's τ between two protocols' rankings, a BCa bootstrap interval over
  losses, and each protocol's agreement with itself (τ between its own seeds).

Fewer than two shared seeds give no test at all, never a made-up p-value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

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
MIN_LOSSES_FOR_INTERVAL = 5  # a bootstrap over fewer losses has too few distinct rankings to mean anything
SEED = 0  # the bootstrap's generator: the same runs always give the same intervals
# the epochs tests compare: the validation-selected one (bench.report.runs: the best on test for runs
# without a validation split, in comparisons of their own), then the last; the first is the headline
EPOCHS = {"selected": "selected_top1", "last": "last_top1"}
HEADLINE = EPOCHS["selected"]
PAIRED_ON = ["seed", "teacher_id"]  # a seed's runs share init and batches; they must share the teacher too

# --correction: statsmodels' method, and what it controls
CORRECTIONS = {"holm": ("holm", "Holm, family-wise error rate"),
               "bh": ("fdr_bh", "Benjamini–Hochberg, false discovery rate")}

BETTER, WORSE, SAME, NO_TEST = "better", "worse", "not significant", "no test"


@dataclass(frozen=True)
class PairedTest:
    """One loss against one baseline over the seeds both finished (a, b: their numbers per seed)."""

    n: int
    delta: float  # mean of a - b
    ci_low: float  # t-based 95% CI, for this comparison alone (not adjusted for the family)
    ci_high: float
    sd: float  # sample std of the per-seed differences
    p_t: float  # paired t-test, two-sided, raw; NaN where there is no test
    p_wilcoxon: float  # Wilcoxon signed-rank, exact where scipy can; NaN below MIN_WILCOXON seeds

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
        return PairedTest(n, delta, math.nan, math.nan, sd, math.nan, math.nan)
    t = stats.ttest_rel(a, b)
    ci = t.confidence_interval(1 - ALPHA)
    p_wilcoxon = float(stats.wilcoxon(a, b).pvalue) if n >= MIN_WILCOXON and diff.any() else math.nan
    return PairedTest(n, delta, float(ci.low), float(ci.high), sd, float(t.pvalue), p_wilcoxon)


SCANNED_SEEDS = 100


def seeds_needed(sd: float, alpha: float = ALPHA) -> float:
    """Seeds for a two-sided paired t-test at ``alpha`` to detect a mean Δ of EFFECT with POWER, given ``sd``."""
    effect_size = EFFECT / sd
    for seeds in range(2, SCANNED_SEEDS + 1):  # counted up where it is small: the root finder can miss there
        if paired_t_power(effect_size, seeds, alpha) >= POWER:
            return float(seeds)
    return float(math.ceil(TTestPower().solve_power(effect_size=effect_size, alpha=alpha, power=POWER)))


def paired_t_power(effect_size: float, seeds: int, alpha: float) -> float:
    """Power of the two-sided paired t-test, from scipy's noncentral t. Its lower tail (rejecting in the wrong
    direction, below alpha / 2) underflows to NaN at small alpha and large effects, which once made
    statsmodels' TTestPower return NaN and the count skip past the seeds that suffice: it counts as 0."""
    df, noncentrality = seeds - 1, effect_size * math.sqrt(seeds)
    critical = stats.t.ppf(1 - alpha / 2, df)
    wrong_way = stats.nct.cdf(-critical, df, noncentrality)
    return float(stats.nct.sf(critical, df, noncentrality) + (0.0 if math.isnan(wrong_way) else wrong_way))


def sd_interval(sd: float, n: int) -> tuple[float, float]:
    """95% interval of the true SD behind a sample SD of ``n`` values (χ² with n - 1 df, normal data)."""
    df = n - 1
    return sd * math.sqrt(df / stats.chi2.ppf(1 - ALPHA / 2, df)), sd * math.sqrt(df / stats.chi2.ppf(ALPHA / 2, df))


def study_size(sd: float, n: int, alpha: float) -> tuple[float, float, float]:
    """Seeds needed from ``sd`` and from both ends of its 95% interval (NaN without a spread)."""
    if not (n >= 2 and sd > 0):
        return math.nan, math.nan, math.nan
    low, high = sd_interval(sd, n)
    return seeds_needed(sd, alpha), seeds_needed(low, alpha), seeds_needed(high, alpha)


def baseline_runs(runs: pd.DataFrame, loss: str) -> pd.DataFrame:
    """The runs of ``loss``'s recipe with the most seeds (ties: the first hash), or none."""
    own = runs[runs["loss"] == loss]
    if own.empty:
        return own
    counts = own.groupby("recipe_hash").size()
    chosen = counts[counts == counts.max()].index.min()
    return own[own["recipe_hash"] == chosen]


TEST_COLUMNS = ["n_pairs", "delta", "ci_low", "ci_high", "sd", "p_t", "p_wilcoxon"]
PAIRED_COLUMNS = [*RECIPE, "baseline", "epoch", *TEST_COLUMNS, "p_t_adjusted", "p_wilcoxon_adjusted", "family",
                  "verdict", "seeds_needed", "seeds_needed_low", "seeds_needed_high"]


def paired_table(finished: pd.DataFrame, baselines: tuple[str, ...], correction: str = "holm") -> pd.DataFrame:
    """One row per (recipe, baseline, epoch) over finished runs, corrected over the comparison's losses.

    The family a p-value is corrected in is every loss of its comparison tested against that baseline
    at that epoch (``family`` counts them), whatever a leaderboard later shows: a filter must not
    change a verdict. ``seeds_needed`` (with the ends of its interval from the SD's 95% interval) is
    at α / family, the level the smallest p of the family must reach under either correction.
    """
    method = CORRECTIONS[correction][0]
    rows = []
    for key, runs in finished.groupby(COMPARISON, dropna=False, sort=False):
        for baseline in baselines:
            base = baseline_runs(runs, baseline)
            if base.empty:
                continue
            base_recipe = base["recipe_hash"].iloc[0]
            for (loss, recipe), own in runs.groupby(["loss", "recipe_hash"], sort=False):
                if recipe == base_recipe:
                    continue
                both = own.merge(base[[*PAIRED_ON, *EPOCHS.values()]], on=PAIRED_ON, suffixes=("", "_base"))
                for epoch, metric in EPOCHS.items():
                    shared = both.dropna(subset=[metric, f"{metric}_base"])
                    test = paired_test(shared[metric], shared[f"{metric}_base"])
                    rows.append([*key, loss, recipe, baseline, epoch, test.n, test.delta, test.ci_low, test.ci_high,
                                 test.sd, test.p_t, test.p_wilcoxon])
    table = pd.DataFrame(rows, columns=[*RECIPE, "baseline", "epoch", *TEST_COLUMNS])
    family = table.groupby([*COMPARISON, "baseline", "epoch"], dropna=False)
    table["p_t_adjusted"] = family["p_t"].transform(lambda p: adjusted(p, method))
    table["p_wilcoxon_adjusted"] = family["p_wilcoxon"].transform(lambda p: adjusted(p, method))
    table["family"] = family["p_t"].transform("count").astype(int)
    table["verdict"] = [verdict(d, p) for d, p in zip(table["delta"], table["p_t_adjusted"])]
    sizes = [study_size(sd, n, ALPHA / max(m, 1)) for sd, n, m in zip(table["sd"], table["n_pairs"], table["family"])]
    table[["seeds_needed", "seeds_needed_low", "seeds_needed_high"]] = pd.DataFrame(
        sizes, index=table.index, columns=range(3)) if sizes else np.empty((0, 3))
    return table[PAIRED_COLUMNS]


def adjusted(p_values: pd.Series, method: str) -> pd.Series:
    """Corrected p-values over the tests that exist; NaN (no test) stays NaN and is not counted."""
    out = pd.Series(np.nan, index=p_values.index)
    present = p_values.notna()
    if present.any():
        out[present] = multipletests(p_values[present], alpha=ALPHA, method=method)[1]
    return out


def verdict(delta: float, p_adjusted: float) -> str:
    if pd.isna(p_adjusted):
        return NO_TEST
    if p_adjusted >= ALPHA:
        return SAME
    return BETTER if delta > 0 else WORSE


def seed_ranks(finished: pd.DataFrame, recipes: pd.DataFrame) -> pd.Series:
    """Per recipe, its rank by selected top-1 within each seed, in seed order ("2 · 1 · 4"); NaN under 2 seeds.

    With three seeds a bootstrap has ten distinct resamples and its "95%" is the full range: the ranks
    themselves say the same honestly. A seed ranks the recipes of the comparison that finished it.
    """
    out = pd.Series(pd.NA, index=recipes.index, dtype=object)
    for _, rows in recipes.groupby(COMPARISON, dropna=False, sort=False):
        runs = finished.merge(rows[RECIPE], on=RECIPE)
        grid = runs.pivot_table(index="seed", columns="recipe_hash", values=HEADLINE, aggfunc="mean")
        ranks = grid.rank(axis=1, ascending=False, method="min")
        for index, recipe in zip(rows.index, rows["recipe_hash"]):
            own = ranks[recipe].dropna() if recipe in ranks else pd.Series(dtype=float)
            if len(own) >= 2:
                out[index] = " · ".join(str(int(rank)) for rank in own)
    return out


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
    low: float  # 95% BCa bootstrap over losses; NaN under MIN_LOSSES_FOR_INTERVAL losses
    high: float
    seeds: tuple[int, int]  # seeds every loss finished, per protocol
    means: tuple[pd.Series, pd.Series]  # mean selected top-1 per loss that τ ranks, per protocol
    within: tuple[list[float], list[float]] = ([], [])  # per protocol: τ between each two of its seeds


def kendall_tau(x, y) -> float:
    return float(stats.kendalltau(x, y).statistic)


def protocol_agreement(a: pd.DataFrame, b: pd.DataFrame) -> Agreement | None:
    """τ between two comparisons' rankings by mean selected top-1 over the losses both have (≥ 3).

    ``a`` and ``b`` are finished runs of one comparison each (one recipe per loss). Only the seeds
    every shared loss finished count. The interval resamples losses (the population τ speaks of),
    not seeds: resampling three seeds adds seed noise, which pulls τ down, so the estimate sat near
    the top of its own interval. ``within``: how well a protocol agrees with itself, seed against seed
    — the ceiling any other protocol's agreement with it can reach.
    """
    grids = [runs.pivot_table(index="seed", columns="loss", values=HEADLINE, aggfunc="mean") for runs in (a, b)]
    losses = sorted(set(grids[0].columns) & set(grids[1].columns))
    if len(losses) < 3:
        return None
    complete = [grid[losses].dropna() for grid in grids]  # the seeds every shared loss finished
    observed = [np.nanmean((own if len(own) else grid[losses]).to_numpy(float), axis=0)
                for own, grid in zip(complete, grids)]
    tau = kendall_tau(*observed)
    within = tuple([kendall_tau(own.loc[s], own.loc[t]) for s, t in combinations(own.index, 2)] for own in complete)
    seeds, means = (len(complete[0]), len(complete[1])), tuple(pd.Series(o, index=losses) for o in observed)
    low, high = tau_interval(*observed)
    return Agreement(losses, tau, low, high, seeds, means, within)


def tau_interval(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """95% BCa bootstrap interval of Kendall's τ, resampling the (x, y) pairs; NaN with too few pairs."""
    if len(x) < MIN_LOSSES_FOR_INTERVAL:
        return math.nan, math.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        interval = stats.bootstrap((np.asarray(x), np.asarray(y)), kendall_tau, paired=True, vectorized=False,
                                   n_resamples=RESAMPLES, method="BCa", rng=SEED).confidence_interval
    return float(interval.low), float(interval.high)
