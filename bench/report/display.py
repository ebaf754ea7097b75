"""How leaderboard numbers read: the cells, labels and notes shared by markdown, HTML and console.

One place decides that a single seed shows "± n/a", a recipe whose seeds all diverged shows
"diverged" and a missing baseline shows "–", so the three renderings never disagree.
"""

from __future__ import annotations

import pandas as pd

from bench.report.aggregate import COMPARISON

MISSING = "–"
NOTES = (
    "best / last: top-1 at the best / last epoch, mean ± sample std over seeds (n/a for one seed). "
    "Diverged runs are counted, never averaged. "
    "Δ: mean per-seed difference in best top-1 to vanilla / kd, over the seeds both finished. "
    "rank: by mean best top-1 within pair and setting."
)


def labelled(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``group`` (comparison id), ``setting`` (its readable budget) and ``label`` (the loss, as shown).

    A setting names batch size, lr and stem only where protocol + epochs leave two comparisons of a
    pair apart; a label carries a short recipe hash only where a loss has several recipes in one.
    """
    shown = table.copy()
    shown["group"] = shown.groupby(COMPARISON, dropna=False, sort=False).ngroup()
    shown["setting"] = shown["protocol"].astype(str) + ", " + shown["epochs"].astype(str) + " ep"
    budget = shown.groupby(["dataset", "pair", "protocol", "epochs"])[["stem", "batch_size", "lr"]]
    ambiguous = budget.transform("nunique").gt(1).any(axis=1)
    detail = ", bs " + shown["batch_size"].astype(str) + ", lr " + shown["lr"].map("{:g}".format)
    shown.loc[ambiguous, "setting"] += detail[ambiguous] + ", stem " + shown["stem"].astype(str)[ambiguous]
    shown["label"] = shown["loss"]
    repeated = shown.groupby(["group", "loss"])["recipe_hash"].transform("nunique").gt(1)
    shown.loc[repeated, "label"] += " [" + shown["recipe_hash"].str[:7][repeated] + "]"
    return shown


def cells(shown: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard as display strings, one column per shown header."""
    out = pd.DataFrame(index=shown.index)
    out["pair"] = shown["pair"]
    out["setting"] = shown["setting"]
    out["#"] = shown["rank"].map(lambda r: MISSING if pd.isna(r) else str(r))
    out["loss"] = shown["label"]
    out["seeds"] = [_seeds(n, d) for n, d in zip(shown["n_seeds"], shown["n_diverged"])]
    out["best top-1 (%)"] = _spread(shown, "best_top1")
    out["last top-1 (%)"] = _spread(shown, "last_top1")
    out["top-5 (%)"] = shown["best_top5_mean"].map(number)
    out["Δ vanilla"] = shown["delta_vanilla"].map(signed)
    out["Δ kd"] = shown["delta_kd"].map(signed)
    out["teacher (%)"] = shown["teacher_top1"].map(number)
    out["s/epoch"] = shown["s_per_epoch"].map(number)
    out["loss ms/step"] = shown["loss_ms"].map(number)
    if "published_top1" in shown:
        out["published (%)"] = shown["published_top1"].map(number)
        out["Δ published (last)"] = shown["delta_published"].map(signed)
    return out


def caption(runs: pd.DataFrame) -> str:
    """Which command(s), device(s) and library versions produced these runs."""
    commands = "; ".join(f"`{command}`" for command in _distinct(runs["command"]))
    libraries = ", ".join(
        f"{name} {'/'.join(_distinct(runs[f'{name}_version']))}" for name in ("torch", "timm", "distillbench")
    )
    return f"{len(runs)} runs from {commands} on {', '.join(_distinct(runs['device']))} ({libraries})."


def number(value: float) -> str:
    return MISSING if pd.isna(value) else f"{value:.2f}"


def signed(value: float) -> str:
    return MISSING if pd.isna(value) else f"{value:+.2f}"


def _spread(shown: pd.DataFrame, metric: str) -> list[str]:
    """Mean ± std per row; "diverged" where no seed finished."""
    triples = zip(shown[f"{metric}_mean"], shown[f"{metric}_std"], shown["n_seeds"])
    return ["diverged" if n == 0 else f"{mean:.2f} ± {'n/a' if pd.isna(std) else f'{std:.2f}'}"
            for mean, std, n in triples]


def _seeds(n_seeds: int, n_diverged: int) -> str:
    return f"{n_seeds} (+{n_diverged} diverged)" if n_diverged else str(n_seeds)


def _distinct(values: pd.Series) -> list[str]:
    return [str(value) for value in values.dropna().unique()]
