"""The leaderboard: one row per recipe (a loss with its settings), its seeds reduced to mean ± std.

Losses are compared inside a *comparison*: the same dataset, pair and training budget (protocol,
stem, epochs, batch size, lr). Ranks and the Δ columns never cross comparisons, so a 2-epoch
``fast`` run is never ranked against a 240-epoch ``standard`` one.
"""

from __future__ import annotations

import pandas as pd

COMPARISON = ["dataset", "pair", "protocol", "stem", "epochs", "batch_size", "lr"]
RECIPE = [*COMPARISON, "loss", "recipe_hash"]
BASELINES = ("vanilla", "kd")

COLUMNS = [
    "dataset", "pair", "protocol", "epochs", "rank", "loss", "n_seeds", "n_diverged",
    "best_top1_mean", "best_top1_std", "last_top1_mean", "last_top1_std", "best_top5_mean",
    "delta_vanilla", "delta_kd", "teacher_top1", "s_per_epoch", "loss_ms",
    "teacher", "student", "stem", "batch_size", "lr", "recipe_hash",
]


def leaderboard(runs: pd.DataFrame, losses: list[str] | None = None) -> pd.DataFrame:
    """Per recipe: seeds, mean/std of best and last top-1, Δ to the baselines, rank, cost.

    ``n_seeds`` counts the runs that finished; diverged runs are counted in ``n_diverged`` and kept
    out of every mean. The std is the sample std (ddof=1), so a single seed has none (NaN), never 0.
    ``losses`` picks the rows shown; the baselines' runs still feed the Δ columns.
    """
    finished = runs[~runs["diverged"]]
    table = runs.groupby(RECIPE, dropna=False).agg(
        teacher=("teacher", "first"),
        student=("student", "first"),
        n_diverged=("diverged", "sum"),
        teacher_top1=("teacher_top1", "mean"),
    )
    stats = finished.groupby(RECIPE, dropna=False).agg(
        n_seeds=("seed", "size"),
        best_top1_mean=("best_top1", "mean"),
        best_top1_std=("best_top1", "std"),
        last_top1_mean=("last_top1", "mean"),
        last_top1_std=("last_top1", "std"),
        best_top5_mean=("best_top5", "mean"),
        s_per_epoch=("s_per_epoch", "mean"),
        loss_ms=("loss_ms", "mean"),
    )
    table = table.join(stats)
    table["n_seeds"] = table["n_seeds"].fillna(0).astype(int)
    for baseline in BASELINES:
        table[f"delta_{baseline}"] = paired_delta(finished, baseline)
    table = table.reset_index()
    if losses:
        table = table[table["loss"].isin(losses)].copy()
    ranks = table.groupby(COMPARISON, dropna=False)["best_top1_mean"].rank(ascending=False, method="min")
    table["rank"] = ranks.astype("Int64")
    order = [*COMPARISON, "rank", "loss", "recipe_hash"]
    return table.sort_values(order, na_position="last", kind="stable")[COLUMNS].reset_index(drop=True)


def paired_delta(finished: pd.DataFrame, baseline: str) -> pd.Series:
    """Mean per-seed difference in best top-1 to ``baseline``, over the seeds both runs finished.

    Pairing by seed compares students that started from the same init and saw the same batches,
    so the noise shared by the two runs cancels. Should a comparison hold several recipes of the
    baseline, the one with the most finished seeds is the baseline.
    """
    base = finished[finished["loss"] == baseline]
    seeds_per_recipe = base.groupby([*COMPARISON, "recipe_hash"], dropna=False).size().rename("n").reset_index()
    chosen = seeds_per_recipe.sort_values(["n", "recipe_hash"], ascending=[False, True]).drop_duplicates(COMPARISON)
    base = base.merge(chosen[[*COMPARISON, "recipe_hash"]], on=[*COMPARISON, "recipe_hash"])
    both = finished.merge(base[[*COMPARISON, "seed", "best_top1"]], on=[*COMPARISON, "seed"], suffixes=("", "_base"))
    both["delta"] = both["best_top1"] - both["best_top1_base"]
    return both.groupby(RECIPE, dropna=False)["delta"].mean()
