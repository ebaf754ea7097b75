"""The leaderboard: one row per recipe (a loss with its settings), its seeds reduced to mean ± std,
with the paired verdicts against the baselines and a rank interval.

Losses are compared inside a *comparison*: the same dataset, pair and training budget (protocol,
stem, epochs, batch size, lr). Ranks, Δ and tests never cross comparisons, so a 2-epoch ``fast``
run is never ranked against a 240-epoch ``standard`` one.
"""

from __future__ import annotations

import pandas as pd

from bench.report.keys import COMPARISON, RECIPE
from bench.report.stats import EPOCHS, HEADLINE, paired_table, seed_ranks

BASELINES = ("vanilla", "kd")

HEAD = ["dataset", "pair", "protocol", "epochs", "teachers", "rank", "seed_ranks", "loss", "n_seeds", "n_diverged",
        "n_collapsed", "selected_top1_mean", "selected_top1_std", "val_top1_mean", "last_top1_mean", "last_top1_std",
        "selected_top5_mean", "best_top1_mean", "best_top1_std"]
TAIL = ["teacher_top1", "teacher_top1_by_seed", "s_per_epoch", "loss_ms", "teacher", "student", "strong_view", "val_size", "tuned",
        "stem", "batch_size", "lr", "weight", "ce_weight", "hparams", "recipe_hash"]
STUDY = {"sd": "paired_sd", "seeds_needed": "seeds_needed", "seeds_needed_low": "seeds_needed_low",
         "seeds_needed_high": "seeds_needed_high"}


def paired_names(correction: str) -> dict[str, str]:
    """paired_table's columns -> their leaderboard names, f"{name}_{baseline}" (+ "_last" for the last epoch)."""
    return {"delta": "delta", "ci_low": "ci_low", "ci_high": "ci_high", "p_t": "p_raw", "p_t_adjusted": f"p_{correction}",
            "p_wilcoxon": "p_wilcoxon_raw", "p_wilcoxon_adjusted": f"p_wilcoxon_{correction}", "family": "family",
            "verdict": "vs"}


def paired_columns(baselines: tuple[str, ...], correction: str = "holm") -> list[str]:
    """The leaderboard's paired columns, baseline by baseline: selected epoch, then last."""
    suffixes = [_suffix(epoch) for epoch in EPOCHS]
    names = paired_names(correction).values()
    return [f"{name}_{baseline}{suffix}" for baseline in baselines for suffix in suffixes for name in names]


def leaderboard(runs: pd.DataFrame, losses: list[str] | None = None,
                baselines: tuple[str, ...] = BASELINES, correction: str = "holm",
                include_collapsed: bool = False) -> pd.DataFrame:
    """Per recipe: seeds, mean/std of selected and last top-1, rank and per-seed ranks, paired Δ and verdicts, cost.

    ``n_seeds`` counts the runs that finished; diverged runs are counted in ``n_diverged`` and kept
    out of every mean and test, and so are collapsed runs (``n_collapsed``, bench.store.collapse) unless
    ``include_collapsed``. The std is the sample std (ddof=1), so a single seed has none (NaN),
    never 0. ``losses`` picks the rows shown; every loss of a comparison still feeds its tests and
    corrections, so a filter never changes a verdict. ``paired_sd_<b>`` / ``seeds_needed_<b>`` (low,
    high): the per-seed spread of Δ selected top-1 to the first baseline ``b``, and the seeds it would
    take to resolve a Δ of 0.5 points at the corrected verdicts' level (from the SD and its interval).
    Wilcoxon columns are left out where no comparison had the seeds for one.
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
    table = table.join(means).join(_teachers_by_seed(runs)).reset_index()
    table["n_seeds"] = table["n_seeds"].fillna(0).astype(int)
    table["seed_ranks"] = seed_ranks(finished, table)
    ranks = table.groupby(COMPARISON, dropna=False)[f"{HEADLINE}_mean"].rank(ascending=False, method="min")
    table["rank"] = ranks.astype("Int64")  # ranked among every loss of the comparison, like the tests
    if losses:
        table = table[table["loss"].isin(losses)]
    order = [*COMPARISON, "rank", "loss", "recipe_hash"]
    table = table.sort_values(order, na_position="last", kind="stable").reset_index(drop=True)
    paired = paired_table(finished, baselines, correction)
    table = table.merge(_paired_wide(paired, baselines, correction), on=RECIPE, how="left")
    study = [f"{name}_{baselines[0]}" for name in STUDY.values()]
    columns = [c for c in paired_columns(baselines, correction) if not (c.startswith("p_wilcoxon") and table[c].isna().all())]
    return table[[*HEAD, *columns, *study, *TAIL]]


def _teachers_by_seed(runs: pd.DataFrame) -> pd.Series:
    """Per recipe, its distinct teachers' top-1 in seed order ("81.75 / 81.36 / 72.45"): where each seed
    trained its own teacher, no one teacher had the mean."""
    ordered = runs.sort_values("seed").drop_duplicates([*RECIPE, "teacher_id"])
    texts = ordered.groupby(RECIPE, dropna=False)["teacher_top1"].agg(lambda top1: " / ".join(f"{v:.2f}" for v in top1))
    return texts.rename("teacher_top1_by_seed")


def _suffix(epoch: str) -> str:
    """The headline epoch's columns carry no suffix; the others their epoch's name."""
    return "" if epoch == next(iter(EPOCHS)) else f"_{epoch}"


def _paired_wide(paired: pd.DataFrame, baselines: tuple[str, ...], correction: str) -> pd.DataFrame:
    """paired_table's long rows as the leaderboard's columns, one row per recipe."""
    names = paired_names(correction)
    parts = [pd.DataFrame(columns=RECIPE).set_index(RECIPE)]
    for (baseline, epoch), rows in paired.groupby(["baseline", "epoch"], sort=False):
        suffix = _suffix(epoch)
        part = rows.set_index(RECIPE)[list(names)]
        parts.append(part.rename(columns=lambda name: f"{names[name]}_{baseline}{suffix}"))
    first = paired[(paired["baseline"] == baselines[0]) & (paired["epoch"] == next(iter(EPOCHS)))].set_index(RECIPE)
    parts.append(first[list(STUDY)].rename(columns=lambda name: f"{STUDY[name]}_{baselines[0]}"))
    wide = pd.concat(parts, axis=1)
    study = [f"{name}_{baselines[0]}" for name in STUDY.values()]
    return wide.reindex(columns=[*paired_columns(baselines, correction), *study]).reset_index()
