"""Does a cheap protocol rank losses as a long one does? One protocol's ranking against another's.

For each pair trained under both protocols: the losses both have, each protocol's mean best top-1
per loss and Kendall's τ between the two rankings with its bootstrap interval. ``bench report
--compare-protocols`` prints these; ``bench report`` draws them when both protocols have seeds to
resample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import pandas as pd

from bench.report.keys import COMPARISON
from bench.report.stats import RESAMPLES, Agreement, baseline_runs, protocol_agreement


@dataclass(frozen=True)
class ProtocolComparison:
    dataset: str
    pair: str
    protocols: tuple[str, str]
    epochs: tuple[int, int]
    agreement: Agreement | None  # None: fewer than 3 losses under both
    strong_view: tuple[bool, bool] = (False, False)  # each side trained on a second, strongly augmented view

    @property
    def names(self) -> tuple[str, str]:
        """How each side reads: "fast (1 ep)", "converged (1 ep, strong view)"."""
        return tuple(f"{protocol} ({epochs} ep{', strong view' if strong else ''})"
                     for protocol, epochs, strong in zip(self.protocols, self.epochs, self.strong_view))

    @property
    def sides(self) -> tuple[str, str]:
        """Each side as a file name part: "fast", "converged, strong view"."""
        return tuple(f"{protocol}, strong view" if strong else protocol
                     for protocol, strong in zip(self.protocols, self.strong_view))

    @property
    def ranks(self) -> tuple[pd.Series, pd.Series]:
        """Each shared loss's rank (1 = best) by the means τ compares."""
        return tuple(mean.rank(ascending=False, method="min").astype(int) for mean in self.agreement.means)


def protocol_comparisons(dataset: str, runs: pd.DataFrame, first: str, second: str) -> list[ProtocolComparison]:
    """Every comparison of ``first`` against ``second`` in one dataset's runs, per pair and budget."""
    finished = runs[~runs["diverged"]]
    found = []
    for pair, own in finished.groupby("pair", sort=False):
        budgets = [list(own[own["protocol"] == protocol].groupby(COMPARISON, dropna=False, sort=False))
                   for protocol in (first, second)]
        for _, runs_a in budgets[0]:
            for _, runs_b in budgets[1]:
                found.append(_compared(dataset, pair, _one_recipe_each(runs_a), _one_recipe_each(runs_b)))
    return found


def resampled_comparisons(dataset: str, runs: pd.DataFrame) -> list[ProtocolComparison]:
    """Each two protocols of a pair whose rankings can be compared with an interval (≥ 3 shared losses,
    ≥ 2 seeds under each): what the report draws."""
    protocols = sorted(runs["protocol"].unique())
    found = [c for first, second in combinations(protocols, 2) for c in protocol_comparisons(dataset, runs, first, second)]
    return [c for c in found if c.agreement is not None and min(c.agreement.seeds) >= 2]


def _one_recipe_each(runs: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([baseline_runs(runs, loss) for loss in runs["loss"].unique()])


def _compared(dataset: str, pair: str, runs_a: pd.DataFrame, runs_b: pd.DataFrame) -> ProtocolComparison:
    protocols = tuple(runs["protocol"].iloc[0] for runs in (runs_a, runs_b))
    epochs = tuple(int(runs["epochs"].iloc[0]) for runs in (runs_a, runs_b))
    strong = tuple(bool(runs["strong_view"].iloc[0]) for runs in (runs_a, runs_b))
    return ProtocolComparison(dataset, pair, protocols, epochs, protocol_agreement(runs_a, runs_b), strong)


def agreement_summary(comparison: ProtocolComparison) -> str:
    """τ, its interval (or why there is none) and the seeds behind it, in one sentence."""
    result, names = comparison.agreement, comparison.names
    if math.isnan(result.low):
        interval = f"no interval: {names[result.seeds.index(min(result.seeds))]} has {min(result.seeds)} seed"
    else:
        interval = (f"95% CI [{result.low:+.2f}, {result.high:+.2f}] "
                    f"(bootstrap over each protocol's seeds, {RESAMPLES} draws)")
    return (f"Kendall's τ = {result.tau:+.2f} over {len(result.losses)} losses, {interval}; "
            f"seeds {result.seeds[0]} / {result.seeds[1]}.")
