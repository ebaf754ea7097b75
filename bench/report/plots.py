"""The figures of one dataset: per comparison accuracy bars, training curves and accuracy vs cost;
across pairs a heatmap of Δ vs the first baseline and a critical-difference diagram per setting;
across protocols of a pair, one ranking against the other.

Figures are ``matplotlib.figure.Figure`` objects (no pyplot state, Agg canvas), each saved as PNG
for viewing and SVG for papers. A loss keeps its colour in every figure of a dataset; in the bars and
the forest plot colour means the verdict. Figures are drawn for 40-odd losses: one row per loss,
labels only where they are the point (the Pareto front), axes that one collapsed loss does not set.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, ScalarFormatter
from scikit_posthocs import critical_difference_diagram

from bench.report.display import (MARKS, MISSING, baselines, correction_of, critical_difference_stem,
                                  protocol_figure_stem, slug)
from bench.report.protocols import ProtocolComparison, agreement_summary
from bench.report.stats import ALPHA, BETTER, CORRECTIONS, NO_TEST, SAME, WORSE, Friedman


COST = ("s/epoch: the student's own step time per epoch (its forward, loss, backward and update; the shared "
        "teacher forward and any preparation before training are not in it); a loss that trains in stages within "
        "its steps (ab's connector initialisation) carries that stage in it")
VERDICT_COLOURS = {BETTER: "tab:green", WORSE: "tab:red", SAME: "0.6", NO_TEST: "0.85"}


def write_plots(plot_dir: Path, shown: pd.DataFrame, runs: pd.DataFrame, across_pairs: list[Friedman] = (),
                protocols: list[ProtocolComparison] = ()) -> tuple[list[Path], dict[str, str]]:
    """Every figure of ``shown`` (a labelled leaderboard), its ``runs`` (with ``group`` and ``label``),
    the Friedman tests ``across_pairs`` and the rankings compared across ``protocols``; with a caption
    per figure (by file stem) that says what it shows."""
    plot_dir.mkdir(parents=True, exist_ok=True)
    colours = palette(shown["label"])
    first_baseline = baselines(shown)[0]
    correction = CORRECTIONS[correction_of(shown)][1]
    written, captions = [], {}

    def add(figure: Figure, stem: Path, caption: str) -> None:
        written.extend(save(figure, stem))
        captions[stem.name] = caption

    for group, rows in shown.groupby("group", sort=False):
        first = rows.iloc[0]
        title = f"{first['dataset']} · {first['teacher']} → {first['student']} ({first['setting']})"
        stem = plot_dir / slug(f"{first['pair']}_{first['setting']}")
        if rows[f"delta_{first_baseline}"].notna().any():
            add(forest(rows, title), Path(f"{stem}_forest"),
                f"{first['setting']}: Δ selected top-1 to each baseline, paired by seed, with its 95% t interval "
                f"(unadjusted); the mark beside is the test after correction ({correction}) over every loss of the "
                "comparison. Collapsed or diverged recipes sit in a panel of their own, unaveraged.")
        add(accuracy_bars(rows, title, first_baseline), Path(f"{stem}_accuracy"),
            f"{first['setting']}: mean selected top-1 per loss ± std over seeds, coloured by the verdict against "
            f"{first_baseline}; the axis is zoomed to where the losses are, a bar off it says so.")
        if rows["epochs"].max() > 1:
            add(training_curves(rows, runs[runs["group"] == group], title, colours), Path(f"{stem}_curves"),
                f"{first['setting']}: test top-1 per epoch, mean over seeds with a min–max band.")
        if rows[["s_per_epoch", "selected_top1_mean"]].notna().all(axis=1).any():
            add(accuracy_vs_cost(rows, title, colours), Path(f"{stem}_cost"),
                f"{first['setting']}: mean selected top-1 against cost; only the Pareto front (no loss both cheaper and "
                f"better) is labelled. {COST}.")
    if shown["group"].nunique() >= 2 and shown[f"delta_{first_baseline}"].notna().any():
        add(delta_heatmap(shown, first_baseline), plot_dir / f"delta_vs_{first_baseline}",
            f"Δ selected top-1 to {first_baseline} per loss (rows) and comparison (columns), with the corrected mark; "
            "the colour scale ends at Tukey's fence of |Δ| (darker beyond), so a collapsed loss does not whiten the rest.")
    for result in across_pairs:
        add(critical_difference(result, shown["dataset"].iloc[0]), plot_dir / critical_difference_stem(result.setting),
            f"{result.setting}: mean rank over pairs; a bar joins losses the Nemenyi test cannot tell apart.")
    for comparison in protocols:
        add(rank_agreement(comparison), plot_dir / protocol_figure_stem(comparison),
            f"Each loss's rank under {comparison.names[0]} against {comparison.names[1]}; on the diagonal they agree.")
    return written, captions


def correction_name(shown: pd.DataFrame) -> str:
    """"Holm" or "Benjamini–Hochberg": the correction the marks of ``shown`` use."""
    return CORRECTIONS[correction_of(shown)][1].split(",")[0]


def collapsed(rows: pd.DataFrame) -> pd.Series:
    """A recipe none of whose seeds gave a usable run (all diverged, or all collapsed to chance or one class:
    collapsed runs are left out of ``n_seeds``, bench.report.aggregate)."""
    return rows["n_seeds"].eq(0)


def forest(rows: pd.DataFrame, title: str) -> Figure:
    """Δ to each baseline with its interval, sorted by Δ to the first; marks beside; collapsed recipes apart."""
    names = baselines(rows)
    apart = collapsed(rows)
    kept = rows[~apart & rows[f"delta_{names[0]}"].notna()].sort_values(f"delta_{names[0]}")
    gone = rows[apart]
    height = 1.6 + 0.26 * len(kept) + (0.6 + 0.26 * len(gone) if len(gone) else 0)
    fig = Figure(figsize=(4.2 * len(names) + 2.0, height), layout="constrained")
    grid = fig.add_gridspec(2 if len(gone) else 1, len(names), height_ratios=[len(kept) + 1, len(gone) + 1][:1 + bool(len(gone))])
    y = np.arange(len(kept))
    for column, baseline in enumerate(names):
        ax = fig.add_subplot(grid[0, column])
        delta, low, high = (kept[f"{name}_{baseline}"].to_numpy(float) for name in ("delta", "ci_low", "ci_high"))
        limits = robust_limits(delta, [low, high])
        colour = [VERDICT_COLOURS.get(v, "0.85") for v in kept[f"vs_{baseline}"]]
        shown_low, shown_high = np.clip(low, *limits), np.clip(high, *limits)
        ax.hlines(y, shown_low, shown_high, color=colour, linewidth=2)
        for cut, edge, marker in ((low < limits[0], limits[0], "<"), (high > limits[1], limits[1], ">")):
            ax.scatter(np.full(cut.sum(), edge), y[cut], marker=marker, color="0.3", s=22, zorder=4, clip_on=False)
        ax.scatter(np.clip(delta, *limits), y, color=colour, zorder=3, s=18)
        for yi, value, off in zip(y, delta, (delta < limits[0]) | (delta > limits[1])):
            if off:
                ax.annotate(f"{value:+.1f} (off scale)", (np.clip(value, *limits), yi), fontsize="x-small",
                            xytext=(3, 3), textcoords="offset points")
        ax.axvline(0, color="0.3", linewidth=1)
        ax.set_xlim(*limits)
        ax.set_yticks(y, kept["label"] if column == 0 else [""] * len(kept), fontsize="small")
        marks = [f"{MARKS.get(v, 'n/a')}" if pd.notna(v) else MISSING for v in kept[f"vs_{baseline}"]]
        right = ax.secondary_yaxis("right")
        right.set_yticks(y, marks, fontsize="small")
        ax.set_ylim(-0.7, len(kept) - 0.3)
        ax.set_xlabel(f"Δ selected top-1 vs {baseline} (points)")
        ax.grid(axis="x", alpha=0.3)
        if len(gone) and column == 0:
            low_ax = fig.add_subplot(grid[1, :])
            low_ax.set_axis_off()
            lines = [f"{label}: {_gone_reason(row)}" for label, (_, row) in zip(gone["label"], gone.iterrows())]
            low_ax.set_title("collapsed or diverged: left out of the comparison", fontsize="small", loc="left")
            low_ax.text(0, 1, "\n".join(lines), va="top", fontsize="small", transform=low_ax.transAxes)
    fig.suptitle(f"{title}\nΔ to baseline, paired by seed: 95% t interval (unadjusted), mark after "
                 f"{correction_name(rows)} correction: ▲ better, ▼ worse, n.s. not significant", fontsize="medium")
    return fig


def _gone_reason(row: pd.Series) -> str:
    collapsed, diverged = int(row["n_collapsed"]), int(row["n_diverged"])
    return " and ".join(f"{count} of {collapsed + diverged} seeds {status}"
                        for count, status in ((collapsed, "collapsed"), (diverged, "diverged")) if count)


def robust_limits(centres: np.ndarray, ends=(), anchor: float | None = 0.0) -> tuple[float, float]:
    """An axis from Tukey's far fences of ``centres`` (quartiles ∓ 3 IQR), narrowed to the data and the
    interval ``ends`` and holding ``anchor``: a few collapsed losses at -70 do not squash forty near 0."""
    centres = np.asarray(centres, float)
    centres = centres[np.isfinite(centres)]
    if not len(centres):
        return -1.0, 1.0
    every = np.concatenate([centres, *(np.asarray(end, float).ravel() for end in ends)])
    every = every[np.isfinite(every)]
    q1, q3 = np.percentile(centres, [25, 75])
    spread = max(q3 - q1, 0.5)
    low, high = max(q1 - 3 * spread, every.min()), min(q3 + 3 * spread, every.max())
    if anchor is not None:
        low, high = min(low, anchor), max(high, anchor)
    pad = max(0.1, 0.05 * (high - low))
    return float(low - pad), float(high + pad)


def accuracy_bars(rows: pd.DataFrame, title: str, baseline: str) -> Figure:
    """Mean selected top-1 per loss as horizontal bars, best on top, coloured by the verdict against ``baseline``."""
    rows = rows.iloc[::-1]
    fig = Figure(figsize=(8.5, 1.8 + 0.26 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    means = rows["selected_top1_mean"].to_numpy(float)
    std = rows["selected_top1_std"].to_numpy(float)
    verdicts = rows[f"vs_{baseline}"] if f"vs_{baseline}" in rows else pd.Series(NO_TEST, index=rows.index)
    colour = ["0.35" if loss == baseline else VERDICT_COLOURS.get(v, "0.85") for loss, v in zip(rows["loss"], verdicts)]
    usable = ~collapsed(rows).to_numpy()
    spread = np.nan_to_num(std)
    teacher = rows["teacher_top1"].mean()
    left, right = robust_limits(means[usable], [means[usable] - spread[usable], means[usable] + spread[usable], [teacher]],
                                anchor=None)
    left, right = max(left, 0.0), min(right, 100.0)
    ax.barh(y, np.nan_to_num(means) - left, left=left, color=colour, height=0.7)
    has = np.isfinite(std) & np.isfinite(means)
    if has.any():
        ax.errorbar(means[has], y[has], xerr=std[has], fmt="none", ecolor="black", capsize=3, zorder=3)
    for yi, mean, n, d in zip(y, means, rows["n_seeds"], rows["n_diverged"]):
        if n == 0:
            ax.text(left, yi, f" all {d} diverged", va="center", fontsize="x-small", color="tab:red")
        elif mean < left:
            ax.text(left, yi, f" {mean:.2f}% (off scale)", va="center", fontsize="x-small")
    labels = [f"{label} (n={n}{f', +{d} diverged' if d else ''})"
              for label, n, d in zip(rows["label"], rows["n_seeds"], rows["n_diverged"])]
    ax.set_yticks(y, labels, fontsize="small")
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlim(left, right)
    handles = [Patch(color=c, label=f"{v} vs {baseline}") for v, c in VERDICT_COLOURS.items() if v in set(verdicts)]
    handles.append(Patch(color="0.35", label=baseline))
    if pd.notna(teacher):
        handles.append(ax.axvline(teacher, color="black", linestyle=":", label=f"teacher {teacher:.2f}% (mean)"))
    ax.legend(handles=handles, loc="lower right", fontsize="x-small")
    ax.set_xlabel("selected top-1 accuracy (%), mean ± std over seeds")
    ax.set_title(f"{title}\ntest top-1 at the selected epoch; colour: verdict vs {baseline} after correction", fontsize="medium")
    ax.grid(axis="x", alpha=0.3)
    return fig


LEGEND_ROWS = 20  # entries per legend column of the training curves


def training_curves(rows: pd.DataFrame, runs: pd.DataFrame, title: str, colours: dict[str, tuple]) -> Figure:
    """Test top-1 per epoch: mean over the finished seeds with a min–max band; diverged runs dotted."""
    columns = math.ceil(len(rows) / LEGEND_ROWS)  # a legend taller than the figure would collapse the axes
    fig = Figure(figsize=(8.5 + 2.5 * (columns - 1), max(5.0, 1.5 + 0.2 * min(len(rows), LEGEND_ROWS))),
                 layout="constrained")
    ax = fig.add_subplot()
    for label in rows["label"]:
        own = runs[runs["label"] == label]
        finished = [_curve(text) for text in own.loc[~own["diverged"], "curve"]]
        diverged = [_curve(text) for text in own.loc[own["diverged"], "curve"]]
        legend = f"{label} (n={len(finished)})" + (f", {len(diverged)} diverged (dotted)" if diverged else "")
        if finished:
            stack = _stack(finished)
            epochs = np.arange(1, stack.shape[1] + 1)
            ax.plot(epochs, np.nanmean(stack, axis=0), color=colours[label], label=legend)
            if len(finished) > 1:
                low, high = np.nanmin(stack, axis=0), np.nanmax(stack, axis=0)
                ax.fill_between(epochs, low, high, color=colours[label], alpha=0.2)
            legend = None
        for curve in diverged:
            epochs = np.arange(1, len(curve) + 1)
            ax.plot(epochs, curve, color=colours[label], label=legend, linestyle=":", linewidth=1)
            last = np.flatnonzero(np.isfinite(curve))
            if len(last):
                ax.plot(epochs[last[-1]], curve[last[-1]], marker="x", color=colours[label])
            legend = None
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("test top-1 accuracy (%)")
    ax.set_title(f"{title}\ntraining curves: mean over seeds, band = min–max")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # every run of the comparison may have collapsed or diverged
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small", ncols=columns)
    return fig


def pareto_front(cost: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Which points no other point beats on both: cheaper (or as cheap) and more accurate (or as accurate)."""
    better = (cost[None, :] <= cost[:, None]) & (accuracy[None, :] >= accuracy[:, None])
    strictly = (cost[None, :] < cost[:, None]) | (accuracy[None, :] > accuracy[:, None])
    return ~(better & strictly).any(axis=1)


def accuracy_vs_cost(rows: pd.DataFrame, title: str, colours: dict[str, tuple]) -> Figure:
    """Mean selected top-1 against the student's own seconds per epoch; the Pareto front is labelled and joined."""
    fig = Figure(figsize=(7.5, 5.2), layout="constrained")
    ax = fig.add_subplot()
    points = rows[rows[["s_per_epoch", "selected_top1_mean"]].notna().all(axis=1) & ~collapsed(rows)]
    x, y = points["s_per_epoch"].to_numpy(float), points["selected_top1_mean"].to_numpy(float)
    front = pareto_front(x, y)
    bottom, top = robust_limits(y, [y - np.nan_to_num(points["selected_top1_std"].to_numpy(float))], anchor=None)
    below = y < bottom
    y = np.maximum(y, bottom)
    _error_bars(ax, x, y, np.where(below, np.nan, points["selected_top1_std"].to_numpy(float)))
    ax.scatter(x[~front], y[~front], color="0.6", zorder=3, s=16, label="dominated (unlabelled)")
    ax.scatter(x[front], y[front], color=[colours[label] for label in points["label"][front]], zorder=4,
               label="Pareto front")
    order = np.argsort(x[front])
    ax.step(x[front][order], y[front][order], where="post", color="0.4", linewidth=1, zorder=2)
    for i, position in enumerate(order):  # along the front, labels staggered so neighbours do not overlap
        label, xi, yi = points["label"][front].iloc[position], x[front][position], y[front][position]
        ax.annotate(label, (xi, yi), xytext=(5, 4 + 9 * (i % 3)), textcoords="offset points", fontsize="small",
                    arrowprops={"arrowstyle": "-", "color": "0.6", "linewidth": 0.5})
    if below.any():
        ax.text(0.01, 0.01, f"below the axis, far under the others (drawn on its edge): "
                f"{', '.join(points['label'][below])}", transform=ax.transAxes, fontsize="x-small", va="bottom")
    ax.set_ylim(bottom, top)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(ScalarFormatter())
    ax.tick_params(axis="x", which="minor", labelsize="x-small")
    ax.set_xlabel("training cost (s/epoch, the student's own step time; log scale)")
    ax.set_ylabel("selected top-1 accuracy (%)")
    ax.set_title(f"{title}\naccuracy vs cost: labelled where no loss is both cheaper and better", fontsize="medium")
    ax.legend(loc="lower right", fontsize="x-small")
    ax.grid(alpha=0.3)
    return fig


def delta_heatmap(shown: pd.DataFrame, baseline: str) -> Figure:
    """Δ selected top-1 vs ``baseline``, losses × comparisons, marked; a loss with several recipes shows its best one."""
    best = shown[shown["loss"] != baseline].sort_values("rank", kind="stable").drop_duplicates(["group", "loss"])
    column = best["pair"] if shown["setting"].nunique() == 1 else best["pair"] + "\n" + best["setting"]
    best = best.assign(column=column)
    grid = best.pivot(index="loss", columns="column", values=f"delta_{baseline}")
    marks = best.pivot(index="loss", columns="column", values=f"vs_{baseline}")
    grid = grid[column.drop_duplicates()].dropna(axis=1, how="all")  # comparisons in leaderboard order, if paired
    grid = grid.loc[grid.median(axis=1).sort_values(ascending=False, na_position="last").index]
    marks = marks.reindex(index=grid.index, columns=grid.columns)
    values = grid.to_numpy(float)
    finite = np.abs(values[np.isfinite(values)])
    q1, q3 = np.percentile(finite, [25, 75]) if len(finite) else (0.0, 1.0)
    limit = float(min(finite.max(), q3 + 1.5 * (q3 - q1))) if len(finite) else 1.0  # Tukey's inner fence of |Δ|
    limit = limit or 1.0
    fig = Figure(figsize=(3.0 + 1.6 * grid.shape[1], 1.8 + 0.3 * grid.shape[0]), layout="constrained")
    ax = fig.add_subplot()
    colour_map = matplotlib.colormaps["RdBu"].with_extremes(bad="0.9")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=colour_map, vmin=-limit, vmax=limit, aspect="auto")
    for (i, j), value in np.ndenumerate(values):
        mark = marks.iat[i, j]
        text = MISSING if np.isnan(value) else f"{value:+.2f} {MARKS.get(mark, '')}".strip()
        ax.text(j, i, text, ha="center", va="center", fontsize="x-small",
                color="white" if np.isfinite(value) and abs(value) > 0.75 * limit else "black")
    ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=30, ha="right", fontsize="small")
    ax.set_yticks(range(grid.shape[0]), grid.index, fontsize="small")
    fig.colorbar(image, ax=ax, extend="both", label=f"Δ selected top-1 vs {baseline} (points; scale ±{limit:.1f})")
    ax.set_title(f"{shown['dataset'].iloc[0]} · Δ selected top-1 vs {baseline}\ncolumns: one comparison each (pair, "
                 f"protocol, epochs); marks after {correction_name(shown)} correction", fontsize="medium")
    return fig


def critical_difference(result: Friedman, dataset: str) -> Figure:
    """Demšar's diagram: mean rank over pairs per loss; a bar joins losses Nemenyi cannot tell apart."""
    fig = Figure(figsize=(8.0, 1.2 + 0.28 * len(result.mean_ranks)), layout="constrained")
    ax = fig.add_subplot()
    critical_difference_diagram(result.mean_ranks, result.nemenyi, ax=ax, alpha=ALPHA,
                                label_fmt_left="{label} ({rank:.2f})", label_fmt_right="({rank:.2f}) {label}")
    ax.set_title(f"{dataset} · {result.setting} · mean rank over {len(result.pairs)} pairs (1 = best)\n"
                 f"Friedman χ² = {result.statistic:.2f}, p = {result.p:.3g}; bars: Nemenyi p ≥ {ALPHA}")
    return fig


def rank_agreement(comparison: ProtocolComparison) -> Figure:
    """Each loss's rank under one protocol against its rank under the other; on the diagonal they agree."""
    ranks = comparison.ranks
    count = len(ranks[0])
    fig = Figure(figsize=(7.0, 7.0), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([1, count], [1, count], color="0.7", linewidth=1, zorder=0)
    ax.scatter(ranks[0], ranks[1][ranks[0].index], color="tab:blue")
    for loss, rank in ranks[0].items():
        ax.annotate(loss, (rank, ranks[1][loss]), textcoords="offset points", xytext=(4, 3), fontsize="x-small")
    ax.set_xlabel(f"rank under {comparison.names[0]} (1 = best)")
    ax.set_ylabel(f"rank under {comparison.names[1]} (1 = best)")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(integer=True))
    ax.invert_xaxis()
    ax.invert_yaxis()
    summary = agreement_summary(comparison).split("; seeds")[0]
    ax.set_title(f"{comparison.dataset} · {comparison.pair}\n{summary}", fontsize="medium", wrap=True)
    return fig


def save(fig: Figure, stem: Path | str) -> list[Path]:
    """PNG and SVG of ``fig``; the SVG without date and with fixed ids, so unchanged figures diff clean."""
    png, svg = Path(f"{stem}.png"), Path(f"{stem}.svg")
    fig.savefig(png, dpi=150)
    with matplotlib.rc_context({"svg.hashsalt": "distillbench"}):
        fig.savefig(svg, metadata={"Date": None})
    return [png, svg]


def palette(labels: pd.Series) -> dict[str, tuple]:
    """A colour per label: tab20's strong colours first, then their light twins."""
    tab20 = matplotlib.colormaps["tab20"].colors
    colours = tab20[0::2] + tab20[1::2]
    return {label: colours[i % len(colours)] for i, label in enumerate(sorted(labels.unique()))}


def _error_bars(ax, x: np.ndarray, y: np.ndarray, std: np.ndarray) -> None:
    """Error bars only where a std exists: one seed gets none rather than a bar of zero."""
    has = np.isfinite(std) & np.isfinite(y)
    if has.any():
        ax.errorbar(x[has], y[has], yerr=std[has], fmt="none", ecolor="black", capsize=4, zorder=3)


def _curve(text) -> np.ndarray:
    """A stored curve (JSON list; NaN or null after a divergence) as floats."""
    return np.array(json.loads(text) if isinstance(text, str) else [], dtype=float)


def _stack(curves: list[np.ndarray]) -> np.ndarray:
    length = max(len(curve) for curve in curves)
    return np.vstack([np.pad(curve, (0, length - len(curve)), constant_values=np.nan) for curve in curves])
