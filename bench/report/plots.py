"""The figures of one dataset: per comparison accuracy bars, training curves and accuracy vs cost;
across pairs a heatmap of Δ vs the first baseline and a critical-difference diagram per setting;
across protocols of a pair, one ranking against the other.

Figures are ``matplotlib.figure.Figure`` objects (no pyplot state, Agg canvas), each saved as PNG
for viewing and SVG for papers. A loss keeps its colour in every figure of a dataset.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scikit_posthocs import critical_difference_diagram

from bench.report.display import baselines, critical_difference_stem, protocol_figure_stem, slug
from bench.report.protocols import ProtocolComparison, agreement_summary
from bench.report.stats import ALPHA, Friedman


def write_plots(plot_dir: Path, shown: pd.DataFrame, runs: pd.DataFrame, across_pairs: list[Friedman] = (),
                protocols: list[ProtocolComparison] = ()) -> list[Path]:
    """Every figure of ``shown`` (a labelled leaderboard), its ``runs`` (with ``group`` and ``label``),
    the Friedman tests ``across_pairs`` and the rankings compared across ``protocols``."""
    plot_dir.mkdir(parents=True, exist_ok=True)
    colours = palette(shown["label"])
    written = []
    for group, rows in shown.groupby("group", sort=False):
        first = rows.iloc[0]
        title = f"{first['dataset']} · {first['teacher']} → {first['student']} ({first['setting']})"
        stem = plot_dir / slug(f"{first['pair']}_{first['setting']}")
        written += save(accuracy_bars(rows, title, colours), f"{stem}_accuracy")
        written += save(training_curves(rows, runs[runs["group"] == group], title, colours), f"{stem}_curves")
        if rows[["s_per_epoch", "best_top1_mean"]].notna().all(axis=1).any():
            written += save(accuracy_vs_cost(rows, title, colours), f"{stem}_cost")
    reference = baselines(shown)[0]
    if shown["group"].nunique() >= 2 and shown[f"delta_{reference}"].notna().any():
        written += save(delta_heatmap(shown, reference), plot_dir / f"delta_vs_{reference}")
    for result in across_pairs:
        figure = critical_difference(result, shown["dataset"].iloc[0])
        written += save(figure, plot_dir / critical_difference_stem(result.setting))
    for comparison in protocols:
        written += save(rank_agreement(comparison), plot_dir / protocol_figure_stem(comparison))
    return written


def accuracy_bars(rows: pd.DataFrame, title: str, colours: dict[str, tuple]) -> Figure:
    """Mean best top-1 per loss, ± std where there are ≥2 seeds; vanilla and teacher as lines."""
    fig = Figure(figsize=(max(7.0, 0.9 * len(rows) + 3.5), 4.8), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    means = rows["best_top1_mean"].to_numpy(float)
    ax.bar(x, np.nan_to_num(means), color=[colours[label] for label in rows["label"]], width=0.7)
    _error_bars(ax, x, means, rows["best_top1_std"].to_numpy(float))
    ticks = [f"{label}\n{_seed_note(n, d)}" for label, n, d in zip(rows["label"], rows["n_seeds"], rows["n_diverged"])]
    ax.set_xticks(x, ticks, rotation=30 if len(rows) > 6 else 0, ha="right" if len(rows) > 6 else "center")
    references = []
    vanilla = rows.loc[rows["loss"] == "vanilla", "best_top1_mean"].dropna()
    if len(vanilla):
        level = vanilla.iloc[0]
        references.append(ax.axhline(level, color="0.35", linestyle="--", label=f"vanilla {level:.2f}%"))
    teacher = rows["teacher_top1"].mean()
    if pd.notna(teacher):
        references.append(ax.axhline(teacher, color="black", linestyle=":", label=f"teacher {teacher:.2f}%"))
    if references:
        ax.legend(handles=references, loc="upper left", bbox_to_anchor=(1.01, 1))
    spread = np.nan_to_num(rows["best_top1_std"].to_numpy(float))
    bottom, _ = ax.set_ylim(*_zoom([means - spread, means + spread, [teacher], vanilla.to_numpy(float)]))
    for xi in x[rows["n_seeds"].to_numpy() == 0]:
        ax.text(xi, bottom, " diverged", rotation=90, ha="center", va="bottom", color="tab:red")
    ax.set_ylabel("best top-1 accuracy (%)")
    ax.set_title(f"{title}\nbest-epoch top-1, mean ± std over seeds")
    ax.grid(axis="y", alpha=0.3)
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
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small", ncols=columns)
    return fig


def accuracy_vs_cost(rows: pd.DataFrame, title: str, colours: dict[str, tuple]) -> Figure:
    """Mean best top-1 against the student's own seconds per epoch, one labelled point per loss."""
    fig = Figure(figsize=(7.0, 5.0), layout="constrained")
    ax = fig.add_subplot()
    points = rows[rows[["s_per_epoch", "best_top1_mean"]].notna().all(axis=1)]
    x, y = points["s_per_epoch"].to_numpy(float), points["best_top1_mean"].to_numpy(float)
    _error_bars(ax, x, y, points["best_top1_std"].to_numpy(float))
    ax.scatter(x, y, color=[colours[label] for label in points["label"]], zorder=3)
    for label, xi, yi in zip(points["label"], x, y):
        ax.annotate(label, (xi, yi), xytext=(5, 4), textcoords="offset points", fontsize="small")
    ax.set_xlabel("training time (s/epoch, the student's own work)")
    ax.set_ylabel("best top-1 accuracy (%)")
    ax.set_title(f"{title}\naccuracy vs cost")
    ax.grid(alpha=0.3)
    return fig


def delta_heatmap(shown: pd.DataFrame, baseline: str) -> Figure:
    """Δ best top-1 vs ``baseline``, losses × pairs; a loss with several recipes shows its best one."""
    best = shown[shown["loss"] != baseline].sort_values("rank", kind="stable").drop_duplicates(["group", "loss"])
    column = best["pair"] if shown["setting"].nunique() == 1 else best["pair"] + "\n" + best["setting"]
    grid = best.assign(column=column).pivot(index="loss", columns="column", values=f"delta_{baseline}")
    grid = grid[column.drop_duplicates()]  # comparisons in leaderboard order
    grid = grid.loc[grid.mean(axis=1).sort_values(ascending=False, na_position="last").index]
    values = grid.to_numpy(float)
    limit = np.nanmax(np.abs(values)) if np.isfinite(values).any() else 1.0
    fig = Figure(figsize=(2.0 + 1.3 * grid.shape[1], 1.5 + 0.4 * grid.shape[0]), layout="constrained")
    ax = fig.add_subplot()
    colour_map = matplotlib.colormaps["RdBu"].with_extremes(bad="0.9")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=colour_map, vmin=-limit, vmax=limit, aspect="auto")
    for (i, j), value in np.ndenumerate(values):
        ax.text(j, i, "–" if np.isnan(value) else f"{value:+.2f}", ha="center", va="center", fontsize="small")
    ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=30, ha="right")
    ax.set_yticks(range(grid.shape[0]), grid.index)
    fig.colorbar(image, ax=ax, label=f"Δ best top-1 vs {baseline} (points)")
    ax.set_title(f"{shown['dataset'].iloc[0]} · Δ best top-1 vs {baseline} per pair")
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


def _zoom(parts) -> tuple[float, float]:
    """Y limits around every finite value with a margin: accuracy differences are a few points."""
    values = np.concatenate([np.asarray(p, float).ravel() for p in parts])
    values = values[np.isfinite(values)]
    if not len(values):
        return 0.0, 100.0
    margin = max(1.0, 0.15 * (values.max() - values.min()))
    return max(0.0, values.min() - margin), min(100.0, values.max() + margin)


def _seed_note(n_seeds: int, n_diverged: int) -> str:
    if n_seeds == 0:
        return f"all {n_diverged} diverged"
    return f"n={n_seeds}" + (f"\n+{n_diverged} diverged" if n_diverged else "")


def _curve(text) -> np.ndarray:
    """A stored curve (JSON list; NaN or null after a divergence) as floats."""
    return np.array(json.loads(text) if isinstance(text, str) else [], dtype=float)


def _stack(curves: list[np.ndarray]) -> np.ndarray:
    length = max(len(curve) for curve in curves)
    return np.vstack([np.pad(curve, (0, length - len(curve)), constant_values=np.nan) for curve in curves])
