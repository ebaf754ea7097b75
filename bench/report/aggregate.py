"""The leaderboard: one row per recipe (a loss with its settings), its seeds reduced to mean ± std,
with the paired verdicts against the baselines and a rank interval.

Losses are compared inside a *comparison*: the same dataset, pair and training budget (protocol,
stem, epochs, batch size, lr). Ranks, Δ and tests never cross comparisons, so a 2-epoch ``fast``
run is never ranked against a 240-epoch ``standard`` one.
"""

from __future__ import annotations

import pandas as pd

from bench.report.keys import COMPARISON, RECIPE
from bench.report.stats import EPOCHS, HEADLINE, paired_table, rank_intervals

BASELINES = ("vanilla", "kd")

# paired_table's columns as they land in the leaderboard: f"{name}_{baseline}" (+ "_last" for the last epoch)
PAIRED = {"delta": "delta", "ci_low": "ci_low", "ci_high": "ci_high", "p_t_holm": "p",
          "p_wilcoxon_holm": "p_wilcoxon", "verdict": "vs"}

HEAD = ["dataset", "pair", "protocol", "epochs", "rank", "rank_low", "rank_high", "loss", "n_seeds", "n_diverged", "n_collapsed",
        "selected_top1_mean", "selected_top1_std", "val_top1_mean", "last_top1_mean", "last_top1_std",
        "selected_top5_mean", "best_top1_mean", "best_top1_std"]
TAIL = ["paired_sd", "seeds_needed", "teacher_top1", "s_per_epoch", "loss_ms",
        "teacher", "student", "strong_view", "val_size", "tuned", "stem", "batch_size", "lr", "weight", "ce_weight", "hparams",
        "recipe_hash"]


def paired_columns(baselines: tuple[str, ...]) -> list[str]:
    """The leaderboard's paired columns, baseline by baseline: selected epoch, then last."""
    suffixes = [_suffix(epoch) for epoch in EPOCHS]
    return [f"{name}_{baseline}{suffix}" for baseline in baselines for suffix in suffixes for name in PAIRED.values()]


def leaderboard(runs: pd.DataFrame, losses: list[str] | None = None,
                baselines: tuple[str, ...] = BASELINES, include_collapsed: bool = False) -> pd.DataFrame:
    """Per recipe: seeds, mean/std of selected and last top-1, rank and its interval, paired Δ and verdicts, cost.

    ``n_seeds`` counts the runs that finished; diverged runs are counted in ``n_diverged`` and kept
    out of every mean and test, and so are collapsed runs (``n_collapsed``, bench.collapse) unless
    ``include_collapsed``. The std is the sample std (ddof=1), so a single seed has none (NaN),
    never 0. ``losses`` picks the rows shown; the baselines' runs still feed the Δ columns.
    ``paired_sd`` / ``seeds_needed``: the per-seed spread of Δ selected top-1 to the first baseline, and
    the seeds it would take to resolve a Δ of 0.5 points.
    """
    left_out = runs["collapsed"] & ~include_collapsed
    finished = runs[~runs["diverged"] & ~left_out]
    table = runs.assign(left_out=left_out).groupby(RECIPE, dropna=False).agg(
        teacher=("teacher", "first"),
        student=("student", "first"),
        weight=("weight", "first"),
        ce_weight=("ce_weight", "first"),
        hparams=("hparams", "first"),
        n_diverged=("diverged", "sum"),
        n_collapsed=("left_out", "sum"),
        teacher_top1=("teacher_top1", "mean"),
    )
    means = finished.groupby(RECIPE, dropna=False).agg(
        n_seeds=("seed", "size"),
        selected_top1_mean=("selected_top1", "mean"),
        selected_top1_std=("selected_top1", "std"),
        val_top1_mean=("val_top1", "mean"),
        last_top1_mean=("last_top1", "mean"),
        last_top1_std=("last_top1", "std"),
        selected_top5_mean=("selected_top5", "mean"),
        best_top1_mean=("best_top1", "mean"),  # best epoch on test: only where published tables are compared
        best_top1_std=("best_top1", "std"),
        s_per_epoch=("s_per_epoch", "mean"),
        loss_ms=("loss_ms", "mean"),
    )
    table = table.join(means).reset_index()
    table["n_seeds"] = table["n_seeds"].fillna(0).astype(int)
    if losses:
        table = table[table["loss"].isin(losses)].copy()
    ranks = table.groupby(COMPARISON, dropna=False)[f"{HEADLINE}_mean"].rank(ascending=False, method="min")
    table["rank"] = ranks.astype("Int64")
    order = [*COMPARISON, "rank", "loss", "recipe_hash"]
    table = table.sort_values(order, na_position="last", kind="stable").reset_index(drop=True)
    table = table.join(rank_intervals(finished, table))
    table = table.merge(_paired_wide(paired_table(finished, baselines, losses), baselines), on=RECIPE, how="left")
    return table[[*HEAD, *paired_columns(baselines), *TAIL]]


def _suffix(epoch: str) -> str:
    """The headline epoch's columns carry no suffix; the others their epoch's name."""
    return "" if epoch == next(iter(EPOCHS)) else f"_{epoch}"


def _paired_wide(paired: pd.DataFrame, baselines: tuple[str, ...]) -> pd.DataFrame:
    """paired_table's long rows as the leaderboard's columns, one row per recipe."""
    parts = [pd.DataFrame(columns=RECIPE).set_index(RECIPE)]
    for (baseline, epoch), rows in paired.groupby(["baseline", "epoch"], sort=False):
        suffix = _suffix(epoch)
        part = rows.set_index(RECIPE)[list(PAIRED)]
        parts.append(part.rename(columns=lambda name: f"{PAIRED[name]}_{baseline}{suffix}"))
    first = paired[(paired["baseline"] == baselines[0]) & (paired["epoch"] == next(iter(EPOCHS)))].set_index(RECIPE)
    parts.append(first[["sd", "seeds_needed"]].rename(columns={"sd": "paired_sd"}))
    wide = pd.concat(parts, axis=1)
    return wide.reindex(columns=[*paired_columns(baselines), "paired_sd", "seeds_needed"]).reset_index()
