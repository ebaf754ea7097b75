"""Does a cheap protocol rank losses as a long one does, and how much of a ranking were the settings?

For each pair trained under both protocols: the losses both have, each protocol's mean selected top-1
per loss and Kendall's τ between the two rankings with its bootstrap interval over losses, beside
each protocol's agreement with itself. A loss enters with the same settings under both protocols.
``bench report --compare-protocols`` prints these; ``bench report`` draws them when there are
enough losses for an interval.

The same measure compares a budget's ``bench run --tuned`` rows with its untuned ones
(``tuning_comparisons``): there each loss enters with its tuned settings on one side and its
recipe's on the other, so τ says how far the ranking was the settings rather than the losses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from itertools import combinations

import pandas as pd

from bench.report.keys import COMPARISON
from bench.report.stats import MIN_LOSSES_FOR_INTERVAL, RESAMPLES, Agreement, protocol_agreement


@dataclass(frozen=True)
class ProtocolComparison:
    dataset: str
    pair: str
    protocols: tuple[str, str]
    epochs: tuple[int, int]
    agreement: Agreement | None  # None: fewer than 3 losses under both
    strong_view: tuple[bool, bool] = (False, False)  # each side trained on a second, strongly augmented view
    teachers: tuple[str, str] = ("", "")  # each side's teacher set, where its protocol has several for the pair
    tuned: tuple[str, str] = ("", "")  # each side's search ("" for the recipe's settings)
    validation: tuple[str, str] = ("", "")  # each side's validation split, where the sides differ in it

    @property
    def kind(self) -> str:
        """What the two sides differ in: "Tuning" (settings) or "Protocols" (budget)."""
        return "Tuning" if self.tuned[0] != self.tuned[1] else "Protocols"

    @property
    def names(self) -> tuple[str, str]:
        """How each side reads: "fast (1 ep)", "converged (1 ep, strong view)", "fast (1 ep, teachers 878b15a)"."""
        return tuple(f"{protocol} ({epochs} ep{extra})" for protocol, epochs, extra in
                     zip(self.protocols, self.epochs, self._extras))

    @property
    def sides(self) -> tuple[str, str]:
        """Each side as a file name part: "fast", "converged, strong view", "fast, teachers 878b15a"."""
        return tuple(protocol + extra for protocol, extra in zip(self.protocols, self._extras))

    @property
    def _extras(self) -> tuple[str, str]:
        """What else sets each side apart: ", strong view", ", teachers 878b15a", ", tuned 1f2e3d4", ", validation 6000"."""
        tuned = [f", tuned {search[:7]}" if search else ", untuned" for search in self.tuned] if any(self.tuned) else ["", ""]
        return tuple((", strong view" if strong else "") + (f", teachers {teachers}" if teachers else "") + search
                     + (f", {split}" if split else "")
                     for strong, teachers, search, split in zip(self.strong_view, self.teachers, tuned, self.validation))

    @property
    def ranks(self) -> tuple[pd.Series, pd.Series]:
        """Each shared loss's rank (1 = best) by the means τ compares."""
        return tuple(mean.rank(ascending=False, method="min").astype(int) for mean in self.agreement.means)


def protocol_comparisons(dataset: str, runs: pd.DataFrame, first: str, second: str) -> list[ProtocolComparison]:
    """Every comparison of ``first`` against ``second`` in one dataset's runs, per pair and budget.

    Both sides have the same settings source (the recipes', or one search's), so τ speaks of the
    protocols alone; where their validation splits differ, both sides name theirs.
    """
    finished = runs[~runs["diverged"]]
    found = []
    for pair, own in finished.groupby("pair", sort=False):
        budgets = [list(own[own["protocol"] == protocol].groupby(COMPARISON, dropna=False, sort=False))
                   for protocol in (first, second)]
        several = [own.loc[own["protocol"] == protocol, "teachers"].nunique() > 1 for protocol in (first, second)]
        for _, runs_a in budgets[0]:
            for _, runs_b in budgets[1]:
                search = runs_a["tuned"].iloc[0]
                if runs_b["tuned"].iloc[0] != search:
                    continue
                compared = _compared(dataset, pair, *same_settings(runs_a, runs_b))
                teachers = tuple(runs["teachers"].iloc[0] if named else "" for runs, named in zip((runs_a, runs_b), several))
                found.append(replace(compared, teachers=teachers, tuned=(search, search),
                                     validation=_splits_where_they_differ(runs_a, runs_b)))
    return found


def tuning_comparisons(dataset: str, runs: pd.DataFrame) -> list[ProtocolComparison]:
    """Each budget's tuned runs against its untuned ones (same pair, protocol and teachers).

    Untuned runs with the tuned runs' validation split are preferred; where the budget has none, its
    untuned runs of another split stand in, and both sides name their split.
    """
    finished = runs[~runs["diverged"]]
    alike = [key for key in COMPARISON if key not in ("tuned", "val_size")]
    found = []
    for _, own in finished.groupby(alike, dropna=False, sort=False):
        untuned = own[own["tuned"] == ""]
        for search, tuned in own[own["tuned"] != ""].groupby("tuned", sort=False):
            split = tuned["val_size"].iloc[0]
            same = untuned[untuned["val_size"] == split]
            for _, baseline in (same if len(same) else untuned).groupby("val_size", dropna=False, sort=False):
                compared = _compared(dataset, own["pair"].iloc[0], *same_settings(baseline, tuned))
                found.append(replace(compared, tuned=("", search),
                                     validation=_splits_where_they_differ(baseline, tuned)))
    return found


def _splits_where_they_differ(runs_a: pd.DataFrame, runs_b: pd.DataFrame) -> tuple[str, str]:
    """Each side's validation split by name where the two differ, else nothing to name."""
    splits = (_split_name(runs_a), _split_name(runs_b))
    return splits if splits[0] != splits[1] else ("", "")


def _split_name(runs: pd.DataFrame) -> str:
    size = runs["val_size"].iloc[0]
    return f"validation {int(size)}" if pd.notna(size) and size else "no validation split"


def resampled_comparisons(dataset: str, runs: pd.DataFrame) -> list[ProtocolComparison]:
    """Each two protocols of a pair, and each tuned budget against its untuned one, whose rankings can be
    compared (≥ 3 shared losses) with each side's agreement with itself beside it (≥ 2 seeds under each):
    what the report draws."""
    protocols = sorted(runs["protocol"].unique())
    found = [c for first, second in combinations(protocols, 2) for c in protocol_comparisons(dataset, runs, first, second)]
    found += tuning_comparisons(dataset, runs)
    return [c for c in found if c.agreement is not None and min(c.agreement.seeds) >= 2]


SETTINGS = ["loss", "weight", "ce_weight", "hparams"]  # what a recipe is, apart from the protocol's budget


def same_settings(runs_a: pd.DataFrame, runs_b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One recipe per loss on each side, the same settings on both where a loss has any in common.

    A loss with several settings under a protocol (a superseded one beside the current) enters with
    the one the other protocol also ran; among several such, or where none is shared, the one with
    the most seeds, then the latest.
    """
    settings = [runs[SETTINGS].astype(str).agg("|".join, axis=1) for runs in (runs_a, runs_b)]
    shared = set(settings[0]) & set(settings[1])
    return tuple(pd.concat([_preferred(own[own["loss"] == loss], setting[own["loss"] == loss], shared)
                            for loss in own["loss"].unique()])
                 for own, setting in zip((runs_a, runs_b), settings))


def _preferred(runs: pd.DataFrame, setting: pd.Series, shared: set[str]) -> pd.DataFrame:
    candidates = runs[setting.isin(shared)] if setting.isin(shared).any() else runs
    order = candidates.groupby("recipe_hash").agg(seeds=("seed", "size"), latest=("finished_at", "max"))
    chosen = order.sort_values(["seeds", "latest"], ascending=False).index[0]
    return runs[runs["recipe_hash"] == chosen]


def _compared(dataset: str, pair: str, runs_a: pd.DataFrame, runs_b: pd.DataFrame) -> ProtocolComparison:
    protocols = tuple(runs["protocol"].iloc[0] for runs in (runs_a, runs_b))
    epochs = tuple(int(runs["epochs"].iloc[0]) for runs in (runs_a, runs_b))
    strong = tuple(bool(runs["strong_view"].iloc[0]) for runs in (runs_a, runs_b))
    return ProtocolComparison(dataset, pair, protocols, epochs, protocol_agreement(runs_a, runs_b), strong)


def agreement_summary(comparison: ProtocolComparison) -> str:
    """τ, its interval (or why there is none), each protocol's agreement with itself and the seeds behind it."""
    result, names = comparison.agreement, comparison.names
    if math.isnan(result.low):
        interval = f"no interval under {MIN_LOSSES_FOR_INTERVAL} losses"
    else:
        interval = (f"95% CI [{result.low:+.2f}, {result.high:+.2f}] "
                    f"(BCa bootstrap over losses, {RESAMPLES} draws)")
    return (f"Kendall's τ = {result.tau:+.2f} over {len(result.losses)} losses, {interval}; "
            f"{_within(names, result)}; seeds {result.seeds[0]} / {result.seeds[1]}.")


def _within(names: tuple[str, str], result: Agreement) -> str:
    """Each protocol's τ between its own seeds (the most any agreement with it can show)."""
    parts = [f"{name} {min(taus):+.2f} to {max(taus):+.2f}" if len(taus) > 1 else
             f"{name} {taus[0]:+.2f}" if taus else f"{name} n/a (one seed)"
             for name, taus in zip(names, result.within)]
    return "seed vs seed within a protocol: " + ", ".join(parts)
