"""How leaderboard numbers read: the cells, labels and notes shared by markdown, HTML and console.

One place decides that a single seed shows "± n/a", a recipe whose seeds all diverged shows
"diverged" (all collapsed: "collapsed") and a missing baseline shows "–", so the three renderings
never disagree.
"""

from __future__ import annotations

import json
import re

import pandas as pd

from bench.report.keys import COMPARISON
from bench.report.protocols import ProtocolComparison, agreement_summary
from bench.report.stats import ALPHA, BETTER, CORRECTIONS, EFFECT, MIN_WILCOXON, POWER, SAME, WORSE, Friedman, study_size
from bench.console.wording import plural

MISSING = "–"
MARKS = {BETTER: "▲", WORSE: "▼", SAME: "n.s."}


def column_notes(correction: str) -> str:
    """What every column of the leaderboard is, for the correction the marks use."""
    name = CORRECTIONS[correction][1]
    return (
        "selected: test top-1 at the epoch of the highest validation top-1 (the validation split is carved from the "
        "training images, its size in the setting); a setting that names no validation split has none (runs from "
        "before it existed), and there selected is the best epoch on test. val: validation top-1 at that epoch. "
        "last: test top-1 at the last epoch. Each is a mean ± sample std over seeds (n/a for one seed). best on "
        "test: the best epoch chosen on the test set, shown only beside published tables, which report it. "
        "Diverged runs are counted, never averaged or tested; so are collapsed runs (at chance or one class), listed "
        "apart. "
        "#: rank by mean selected top-1 within the comparison; ranks by seed: the rank within each seed, in seed order "
        "(with 3 seeds no resampled interval reaches 95%, so none is shown). "
        "Δ: mean per-seed difference in selected top-1 to the baseline over the seeds both finished against the same "
        "teacher (runs of a seed share the student's init and batches), with its t-based 95% CI for that comparison "
        f"alone (unadjusted; the marks are adjusted). vs: paired t-test, p corrected by {name} over every loss of the "
        f"comparison (not only those displayed), selected then last epoch (one mark after one epoch, where they are one): ▲ better, ▼ worse, "
        f"n.s. not significant at α = {ALPHA} after correction (not a finding of no difference); n/a: fewer than two "
        f"shared seeds, no test. leaderboard.csv has raw and corrected p (p_raw_*, p_{correction}_*) and the family "
        f"size; Wilcoxon signed-rank columns only where some loss has ≥ {MIN_WILCOXON} seeds (below, its smallest "
        f"p is ≥ 2/2^5). seeds for Δ {EFFECT}: seeds a paired t-test needs to resolve Δ = {EFFECT} points with "
        f"{POWER:.0%} power at α / family (the level the smallest corrected p must reach), against the first baseline, "
        "from the observed SD of Δ; in brackets the same from both ends of the SD's 95% interval."
    )


def labelled(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``group`` (comparison id), ``setting`` (its readable budget) and ``label`` (the loss, as shown).

    A setting names batch size, lr and stem only where protocol + epochs leave two comparisons of a
    pair apart; where a loss has several recipes in one, each label names the settings they differ in.
    """
    shown = table.copy()
    shown["group"] = shown.groupby(COMPARISON, dropna=False, sort=False).ngroup()
    shown["setting"] = shown["protocol"].astype(str) + ", " + shown["epochs"].astype(str) + " ep"
    shown.loc[shown["strong_view"].eq(True), "setting"] += ", strong view"
    shown["setting"] += shown["val_size"].map(lambda size: "" if pd.isna(size) else f", validation {size:.0f}")
    shown.loc[shown["tuned"].ne(""), "setting"] += ", tuned " + shown["tuned"].str[:7]
    budget = shown.groupby(["dataset", "pair", "protocol", "epochs"])[["stem", "batch_size", "lr"]]
    ambiguous = budget.transform("nunique").gt(1).any(axis=1)
    detail = ", bs " + shown["batch_size"].astype(str) + ", lr " + shown["lr"].map("{:g}".format)
    shown.loc[ambiguous, "setting"] += detail[ambiguous] + ", stem " + shown["stem"].astype(str)[ambiguous]
    mixed = shown.groupby(["dataset", "pair", "protocol", "epochs", "strong_view"])["teachers"].transform("nunique").gt(1)
    shown.loc[mixed, "setting"] += ", teachers " + shown["teachers"].astype(str)[mixed]
    shown["label"] = shown["loss"]
    repeated = shown.groupby(["group", "loss"])["recipe_hash"].transform("nunique").gt(1)
    for _, variants in shown[repeated].groupby(["group", "loss"]):
        shown.loc[variants.index, "label"] = variant_labels(variants)
    return shown


def variant_labels(variants: pd.DataFrame) -> pd.Series:
    """Labels for several recipes of one loss in one comparison: "kd T=2", by the settings in which they
    differ; a short recipe hash where their settings agree (they differ elsewhere)."""
    settings = [{"weight": w, "ce_weight": c, **json.loads(h)}
                for w, c, h in zip(variants["weight"], variants["ce_weight"], variants["hparams"])]
    keys = [k for k in dict.fromkeys(k for s in settings for k in s)
            if len({json.dumps(s.get(k), sort_keys=True) for s in settings}) > 1]
    labels = [" ".join([loss, *(f"{k}={_setting(s.get(k))}" for k in keys)])
              for loss, s in zip(variants["loss"], settings)]
    if len(set(labels)) < len(labels):
        labels = [f"{label} [{recipe[:7]}]" for label, recipe in zip(labels, variants["recipe_hash"])]
    return pd.Series(labels, index=variants.index)


def _setting(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return json.dumps(value, separators=(",", ":")) if isinstance(value, (list, dict)) else str(value)


def baselines(shown: pd.DataFrame) -> list[str]:
    """The baselines a leaderboard was tested against, in their order (from its ``vs_<baseline>`` columns)."""
    return [column[3:] for column in shown.columns if column.startswith("vs_") and not column.endswith("_last")]


def cells(shown: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard as display strings, one column per shown header."""
    out = pd.DataFrame(index=shown.index)
    out["pair"] = shown["pair"]
    out["setting"] = shown["setting"]
    out["#"] = shown["rank"].map(lambda r: MISSING if pd.isna(r) else str(r))
    out["ranks by seed"] = shown["seed_ranks"].map(lambda ranks: "n/a" if pd.isna(ranks) else ranks)
    out["loss"] = shown["label"]
    out["seeds"] = [_seeds(*counts) for counts in zip(shown["n_seeds"], shown["n_diverged"], shown["n_collapsed"])]
    out["selected top-1 (%)"] = _spread(shown, "selected_top1")
    out["val top-1 (%)"] = shown["val_top1_mean"].map(number)
    out["last top-1 (%)"] = _spread(shown, "last_top1")
    out["top-5 (%)"] = shown["selected_top5_mean"].map(number)
    correction = correction_of(shown)
    one_epoch = shown["epochs"].eq(1).to_list()
    for baseline in baselines(shown):
        out[f"Δ {baseline}"] = shown[f"delta_{baseline}"].map(signed)
        bounds = zip(shown[f"delta_{baseline}"], shown[f"ci_low_{baseline}"], shown[f"ci_high_{baseline}"])
        out[f"95% CI {baseline} (unadjusted)"] = [_ci(delta, low, high) for delta, low, high in bounds]
        marks = zip(shown[f"vs_{baseline}"], shown[f"vs_{baseline}_last"], one_epoch)
        out[f"vs {baseline} ({correction})"] = [_marks(*values) for values in marks]
    first = baselines(shown)[0] if baselines(shown) else None
    if first:
        needed = zip(*(shown[f"{name}_{first}"] for name in ("seeds_needed", "seeds_needed_low", "seeds_needed_high")))
        out[f"seeds for Δ {EFFECT} vs {first}"] = [_needed(*values) for values in needed]
    out["teacher (%)"] = shown["teacher_top1_by_seed"].fillna(MISSING)
    out["s/epoch"] = shown["s_per_epoch"].map(number)
    out["loss ms/step"] = shown["loss_ms"].map(number)
    if "published_top1" in shown:
        out["best on test (%)"] = _spread(shown, "best_top1")
        out["published (%)"] = shown["published_top1"].map(number)
        out["Δ published (last)"] = shown["delta_published"].map(signed)
    return out


def correction_of(shown: pd.DataFrame) -> str:
    """The correction a leaderboard's marks use (from its ``p_<correction>_<baseline>`` columns)."""
    return next((name for name in CORRECTIONS if any(c.startswith(f"p_{name}_") for c in shown.columns)), "holm")


def comparison_notes(shown: pd.DataFrame) -> dict[int, str]:
    """Per comparison (``group``): its teachers, how many seeds it has and how many would resolve Δ = 0.5.

    The spread is the per-seed SD of Δ to the first baseline, pooled over the losses (root mean square).
    """
    first = baselines(shown)[0] if baselines(shown) else "baseline"
    return {group: _study_size(rows, first) for group, rows in shown.groupby("group", sort=False)}


def _study_size(rows: pd.DataFrame, baseline: str) -> str:
    seeds = int(rows["n_seeds"].max())
    if seeds < 2:
        return (f"{plural(seeds, 'seed')} per loss: no paired test; a Δ is one difference, not a verdict, "
                "and no spread is known to size a study (run ≥ 2 seeds).")
    sd_column = f"paired_sd_{baseline}"
    if sd_column not in rows or rows[sd_column].isna().all():
        return f"{seeds} seeds; no finished {baseline} run shares a seed and a teacher, so nothing is paired to size a study."
    spread = rows[sd_column][rows[sd_column] > 0]
    if spread.empty:
        return f"{seeds} seeds; no spread of Δ between seeds is observed to size a study from."
    pooled = float((spread ** 2).mean() ** 0.5)
    family = int(rows[f"family_{baseline}"].max())
    needed = _needed(*study_size(pooled, seeds, ALPHA / family))
    return (f"{seeds} seeds. Paired SD of Δ selected top-1 to {baseline}: {pooled:.2f} points (pooled over {len(spread)} "
            f"losses) → {needed} seeds would resolve Δ = {EFFECT} points with {POWER:.0%} power at "
            f"α / {family} = {ALPHA / family:.3g}, the level the smallest of {family} corrected p-values must reach "
            f"(in brackets: from both ends of the SD's 95% interval over {seeds} seeds).")


def _needed(needed: float, low: float, high: float) -> str:
    return MISSING if pd.isna(needed) else f"{int(needed)} [{int(low)}–{int(high)}]"


def summary_lines(shown: pd.DataFrame) -> list[str]:
    """Per comparison, in words: the best loss and its cost, the differences that are real after the
    correction, and what collapsed or diverged (named, never averaged in)."""
    correction = CORRECTIONS[correction_of(shown)][1].split(",")[0]
    lines = []
    for _, rows in shown.groupby("group", sort=False):
        first, usable = rows.iloc[0], rows[rows["n_seeds"].gt(0) & rows["n_collapsed"].lt(rows["n_seeds"])]
        parts = [f"{first['pair']} ({first['setting']}):"]
        if not usable.empty:
            top = usable.sort_values("rank", kind="stable").iloc[0]
            seeds = int(top["n_seeds"])
            parts.append(f"best {top['label']} at {top['selected_top1_mean']:.2f}% ({plural(seeds, 'seed')}, "
                         f"{number(top['s_per_epoch'])} s/epoch).")
        for baseline in baselines(rows):
            tested = rows[f"family_{baseline}"].max()
            if pd.isna(tested) or not tested:
                parts.append(f"No test against {baseline}: no loss has two seeds paired with it (same seed and "
                             "teacher) that differ.")
                continue
            real = {mark: rows.loc[rows[f"vs_{baseline}"] == verdict, "label"].to_list()
                    for verdict, mark in ((BETTER, "better"), (WORSE, "worse"))}
            found = "; ".join(f"{mark}: {', '.join(labels)}" for mark, labels in real.items() if labels)
            base_cost = rows.loc[rows["loss"] == baseline, "s_per_epoch"]
            cost = f" ({baseline}: {number(base_cost.iloc[0])} s/epoch)" if len(base_cost) else ""
            parts.append(f"Against {baseline}{cost}, after {correction} over {int(tested)} losses at α = {ALPHA}: "
                         + (found if found else "no difference is significant") + ".")
        gone = rows[rows["n_seeds"].eq(0) | rows["n_collapsed"].gt(0)]
        if not gone.empty:
            parts.append("Collapsed or diverged: " + ", ".join(
                f"{label} ({int(c)} collapsed, {int(d)} diverged)"
                for label, c, d in zip(gone["label"], gone["n_collapsed"], gone["n_diverged"])) + ".")
        lines.append(" ".join(parts))
    return lines


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
    """Whether two protocols, or tuned and untuned settings, rank the losses of a pair alike, with the figure."""
    first, second = comparison.names
    return (f"{comparison.kind} · {comparison.pair}, {first} vs {second}: {agreement_summary(comparison)} "
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
    """Mean ± std per row; "diverged" where no seed finished, "collapsed" where every one that did collapsed."""
    rows = zip(shown[f"{metric}_mean"], shown[f"{metric}_std"], shown["n_seeds"], shown["n_collapsed"])
    return [("collapsed" if collapsed else "diverged") if n == 0 else f"{mean:.2f} ± {'n/a' if pd.isna(std) else f'{std:.2f}'}"
            for mean, std, n, collapsed in rows]


def _ci(delta: float, low: float, high: float) -> str:
    if pd.isna(delta):
        return MISSING
    return "n/a" if pd.isna(low) else f"[{low:+.2f}, {high:+.2f}]"


def _marks(best: str, last: str, one_epoch: bool = False) -> str:
    """Selected- then last-epoch verdict as two marks (one after one epoch, where they are the same epoch); n/a where
    neither was tested; – where nothing is paired."""
    if pd.isna(best):
        return MISSING
    if best not in MARKS and last not in MARKS:
        return "n/a"
    return MARKS.get(best, "n/a") if one_epoch else f"{MARKS.get(best, 'n/a')} {MARKS.get(last, 'n/a')}"


def _seeds(n_seeds: int, n_diverged: int, n_collapsed: int) -> str:
    apart = [f"+{count} {status}" for count, status in ((n_diverged, "diverged"), (n_collapsed, "collapsed")) if count]
    return f"{n_seeds} ({', '.join(apart)})" if apart else str(n_seeds)


def collapse_line(collapsed: pd.DataFrame) -> str | None:
    """One line naming which method collapsed under which protocol, with how many seeds; None when none did."""
    if collapsed.empty:
        return None
    counts = collapsed.groupby(["loss", "pair", "protocol", "strong_view"], sort=True)["seed"].nunique()
    named = [f"{loss} ({pair}, {protocol}{', strong view' if strong else ''}: {plural(seeds, 'seed')})"
             for (loss, pair, protocol, strong), seeds in counts.items()]
    return ("Collapsed (at chance or one class predicted; left out of every mean, test, rank and τ, "
            f"bench report --include-collapsed keeps them): {'; '.join(named)}.")


def collapsed_runs(collapsed: pd.DataFrame) -> pd.DataFrame:
    """The collapsed runs one by one, as the leaderboard's own part shows them."""
    out = collapsed.sort_values(["pair", "protocol", "loss", "seed"], kind="stable")
    protocol = out["protocol"] + out["strong_view"].map({True: ", strong view", False: ""})
    return pd.DataFrame({"loss": out["loss"], "pair": out["pair"], "protocol": protocol,
                         "seed": out["seed"].astype(int).astype(str), "last top-1 (%)": out["last_top1"].map(number),
                         "reason": out["collapse_reason"]})


def _distinct(values: pd.Series) -> list[str]:
    return [str(value) for value in values.dropna().unique()]
