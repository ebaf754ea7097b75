"""How leaderboard numbers read: the cells, labels and notes shared by markdown, HTML and console.

One place decides that a single seed shows "± n/a", a recipe whose seeds all diverged shows
"diverged" and a missing baseline shows "–", so the three renderings never disagree.
"""

from __future__ import annotations

import re

import pandas as pd

from bench.report.keys import COMPARISON
from bench.report.protocols import ProtocolComparison, agreement_summary
from bench.report.stats import ALPHA, BETTER, SAME, WORSE, Friedman, seeds_needed
from bench.wording import plural

MISSING = "–"
MARKS = {BETTER: "▲", WORSE: "▼", SAME: "≈"}
NOTES = (
    "best / last: top-1 at the best / last epoch, mean ± sample std over seeds (n/a for one seed). "
    "Diverged runs are counted, never averaged or tested. "
    "rank: by mean best top-1 within pair and setting; rank 95%: its interval from resampling seeds "
    "(bootstrap, 2000 draws, seeded). "
    "Δ: mean per-seed difference in best top-1 to the baseline over the seeds both finished (runs of a seed share "
    "the student's init and batches), with its t-based 95% CI (not adjusted for the number of losses; the marks are). "
    "vs: paired t-test, Holm-corrected across the losses of the comparison, for the best then the last epoch: "
    "▲ better, ▼ worse, ≈ indistinguishable at α = 0.05; n/a: fewer than two shared seeds, no test. "
    "leaderboard.csv adds the Holm-corrected p-values (t-test; Wilcoxon signed-rank from 6 seeds). "
    "seeds for Δ 0.5: seeds a paired t-test needs to resolve a Δ of 0.5 points with 80% power, "
    "from the observed spread of Δ to the first baseline."
)


def labelled(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``group`` (comparison id), ``setting`` (its readable budget) and ``label`` (the loss, as shown).

    A setting names batch size, lr and stem only where protocol + epochs leave two comparisons of a
    pair apart; a label carries a short recipe hash only where a loss has several recipes in one.
    """
    shown = table.copy()
    shown["group"] = shown.groupby(COMPARISON, dropna=False, sort=False).ngroup()
    shown["setting"] = shown["protocol"].astype(str) + ", " + shown["epochs"].astype(str) + " ep"
    shown.loc[shown["strong_view"].eq(True), "setting"] += ", strong view"
    budget = shown.groupby(["dataset", "pair", "protocol", "epochs"])[["stem", "batch_size", "lr"]]
    ambiguous = budget.transform("nunique").gt(1).any(axis=1)
    detail = ", bs " + shown["batch_size"].astype(str) + ", lr " + shown["lr"].map("{:g}".format)
    shown.loc[ambiguous, "setting"] += detail[ambiguous] + ", stem " + shown["stem"].astype(str)[ambiguous]
    shown["label"] = shown["loss"]
    repeated = shown.groupby(["group", "loss"])["recipe_hash"].transform("nunique").gt(1)
    shown.loc[repeated, "label"] += " [" + shown["recipe_hash"].str[:7][repeated] + "]"
    return shown


def baselines(shown: pd.DataFrame) -> list[str]:
    """The baselines a leaderboard was tested against, in their order (from its ``vs_<baseline>`` columns)."""
    return [column[3:] for column in shown.columns if column.startswith("vs_") and not column.endswith("_last")]


def cells(shown: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard as display strings, one column per shown header."""
    out = pd.DataFrame(index=shown.index)
    out["pair"] = shown["pair"]
    out["setting"] = shown["setting"]
    out["#"] = shown["rank"].map(lambda r: MISSING if pd.isna(r) else str(r))
    out["rank 95%"] = [_interval(*values) for values in zip(shown["rank"], shown["rank_low"], shown["rank_high"])]
    out["loss"] = shown["label"]
    out["seeds"] = [_seeds(n, d) for n, d in zip(shown["n_seeds"], shown["n_diverged"])]
    out["best top-1 (%)"] = _spread(shown, "best_top1")
    out["last top-1 (%)"] = _spread(shown, "last_top1")
    out["top-5 (%)"] = shown["best_top5_mean"].map(number)
    for baseline in baselines(shown):
        out[f"Δ {baseline}"] = shown[f"delta_{baseline}"].map(signed)
        bounds = zip(shown[f"delta_{baseline}"], shown[f"ci_low_{baseline}"], shown[f"ci_high_{baseline}"])
        out[f"95% CI {baseline}"] = [_ci(delta, low, high) for delta, low, high in bounds]
        out[f"vs {baseline}"] = [_marks(*marks) for marks in zip(shown[f"vs_{baseline}"], shown[f"vs_{baseline}_last"])]
    out["seeds for Δ 0.5"] = shown["seeds_needed"].map(lambda n: MISSING if pd.isna(n) else str(int(n)))
    out["teacher (%)"] = shown["teacher_top1"].map(number)
    out["s/epoch"] = shown["s_per_epoch"].map(number)
    out["loss ms/step"] = shown["loss_ms"].map(number)
    if "published_top1" in shown:
        out["published (%)"] = shown["published_top1"].map(number)
        out["Δ published (last)"] = shown["delta_published"].map(signed)
    return out


def comparison_notes(shown: pd.DataFrame) -> dict[int, str]:
    """Per comparison (``group``): how many seeds it has and how many would resolve a Δ of 0.5 points.

    The spread is the per-seed SD of Δ to the first baseline, pooled over the losses (root mean square).
    """
    first = baselines(shown)[0] if baselines(shown) else "baseline"
    return {group: _study_size(rows, first) for group, rows in shown.groupby("group", sort=False)}


def _study_size(rows: pd.DataFrame, baseline: str) -> str:
    seeds = int(rows["n_seeds"].max())
    if seeds < 2:
        return (f"{seeds} seed{'s' * (seeds != 1)} per loss: no paired test; a Δ is one difference, not a verdict, "
                "and no spread is known to size a study (run ≥ 2 seeds).")
    if rows["paired_sd"].isna().all():
        return f"{seeds} seeds; no finished {baseline} run shares a seed, so nothing is paired to size a study."
    spread = rows["paired_sd"][rows["paired_sd"] > 0]
    if spread.empty:
        return f"{seeds} seeds; no spread of Δ between seeds is observed to size a study from."
    pooled = float((spread ** 2).mean() ** 0.5)
    return (f"{seeds} seeds. Paired SD of Δ best top-1 to {baseline}: {pooled:.2f} points (pooled over {len(spread)} "
            f"losses) → {int(seeds_needed(pooled))} seeds would resolve a Δ of 0.5 points with 80% power.")


def comparison_lines(shown: pd.DataFrame) -> list[str]:
    """``comparison_notes`` with each comparison named, for pages that show all comparisons in one table."""
    firsts = shown.drop_duplicates("group").set_index("group")
    return [f"{firsts.loc[group, 'pair']} ({firsts.loc[group, 'setting']}): {note}"
            for group, note in comparison_notes(shown).items()]


def friedman_note(result: Friedman) -> str:
    """The Friedman test over pairs in words, with the figure that shows which losses differ."""
    verdict = "the losses differ" if result.p < ALPHA else "no difference between the losses is shown"
    return (f"Across {len(result.pairs)} pairs ({result.setting}): Friedman χ² = {result.statistic:.2f}, "
            f"p = {result.p:.3g} over {len(result.mean_ranks)} losses every pair has: {verdict} at α = {ALPHA}. "
            f"Critical-difference diagram (mean rank, Nemenyi post-hoc; a bar joins losses not told apart): "
            f"plots/{critical_difference_stem(result.setting)}.png.")


def protocol_note(comparison: ProtocolComparison) -> str:
    """Whether two protocols rank the losses of a pair alike, with the figure that shows it."""
    first, second = comparison.names
    return (f"Protocols · {comparison.pair}, {first} vs {second}: {agreement_summary(comparison)} "
            f"Ranks against each other: plots/{protocol_figure_stem(comparison)}.png.")


def protocol_figure_stem(comparison: ProtocolComparison) -> str:
    first, second = comparison.sides
    return slug(f"{comparison.pair}_{first}_vs_{second}_ranks")


def critical_difference_stem(setting: str) -> str:
    return f"critical_difference_{slug(setting)}"


def slug(text: str) -> str:
    """``text`` as a file name: "resnet14-resnet8_fast, 1 ep" -> "resnet14-resnet8_fast_1ep"."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "", text.replace(", ", "_").replace(" ", ""))


def caption(runs: pd.DataFrame, list_commands: bool = True) -> str:
    """Which command(s), device(s) and library versions produced these runs; without ``list_commands``
    only how many commands (the terminal's footer: leaderboard.md lists them)."""
    commands = _distinct(runs["command"])
    said = "; ".join(f"`{command}`" for command in commands) if list_commands else \
        (f"`{commands[0]}`" if len(commands) == 1 else f"{len(commands)} commands (listed in leaderboard.md)")
    libraries = ", ".join(
        f"{name} {'/'.join(_distinct(runs[f'{name}_version']))}" for name in ("torch", "timm", "distillbench")
    )
    return f"{plural(len(runs), 'run')} from {said} on {', '.join(_distinct(runs['device']))} ({libraries})."


def number(value: float) -> str:
    return MISSING if pd.isna(value) else f"{value:.2f}"


def signed(value: float) -> str:
    return MISSING if pd.isna(value) else f"{value:+.2f}"


def _spread(shown: pd.DataFrame, metric: str) -> list[str]:
    """Mean ± std per row; "diverged" where no seed finished."""
    triples = zip(shown[f"{metric}_mean"], shown[f"{metric}_std"], shown["n_seeds"])
    return ["diverged" if n == 0 else f"{mean:.2f} ± {'n/a' if pd.isna(std) else f'{std:.2f}'}"
            for mean, std, n in triples]


def _interval(rank, low, high) -> str:
    if pd.isna(rank):
        return MISSING
    return "n/a" if pd.isna(low) else f"{low}–{high}"


def _ci(delta: float, low: float, high: float) -> str:
    if pd.isna(delta):
        return MISSING
    return "n/a" if pd.isna(low) else f"[{low:+.2f}, {high:+.2f}]"


def _marks(best: str, last: str) -> str:
    """Best- then last-epoch verdict as two marks; n/a where neither was tested; – where nothing is paired."""
    if pd.isna(best):
        return MISSING
    if best not in MARKS and last not in MARKS:
        return "n/a"
    return f"{MARKS.get(best, 'n/a')} {MARKS.get(last, 'n/a')}"


def _seeds(n_seeds: int, n_diverged: int) -> str:
    return f"{n_seeds} (+{n_diverged} diverged)" if n_diverged else str(n_seeds)


def _distinct(values: pd.Series) -> list[str]:
    return [str(value) for value in values.dropna().unique()]
