"""From ``runs.csv`` to every report file of a dataset: leaderboard CSV and markdown, figures, HTML page.

The filters are checked before anything is written; every file is made before any is written, so a
failure leaves the previous report whole; each text file is replaced atomically.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd
from rich.console import Console

from bench.report.aggregate import BASELINES, leaderboard
from bench.report.console import leaderboard_tables
from bench.report.display import caption, collapse_line, column_notes, friedman_note, labelled, protocol_note
from bench.report.html import report_html
from bench.report.keys import RECIPE
from bench.report.markdown import leaderboard_markdown
from bench.report.plots import write_plots
from bench.report.protocols import resampled_comparisons
from bench.report.reference import published
from bench.report.runs import collapsed_apart, select_runs
from bench.report.stats import CORRECTIONS, friedman_over_pairs
from bench.store.results import atomic_write_text
from registry import ConfigError


def build_report(
    results_dir: Path,
    datasets: list[str] | None = None,
    pairs: list[str] | None = None,
    losses: list[str] | None = None,
    console: Console | bool | None = None,
    baselines: tuple[str, ...] | None = None,
    correction: str = "holm",
    include_collapsed: bool = False,
) -> list[Path]:
    """Write the report of every selected dataset and return the files written.

    ``console``: where the leaderboard table is printed (None: stdout, False: nowhere).
    ``baselines``: the losses every other loss is tested against, paired by seed; when given, each must
    have runs (the default, vanilla and kd, is used where present).
    ``correction``: how the marks' p-values are corrected over each comparison's losses (``CORRECTIONS``).
    ``include_collapsed``: count collapsed runs in means, tests, ranks and τ (by default they are left out
    and listed apart).
    """
    results_dir = Path(results_dir)
    check_correction(correction)
    selected = select_runs(results_dir, datasets, pairs, losses)
    if baselines is not None:
        check_baselines(baselines, selected)
    if console is None:
        console = Console()
    written = []
    for dataset, runs in selected.items():
        written += write_dataset_report(results_dir / dataset, dataset, runs, losses, console, baselines or BASELINES,
                                        correction, include_collapsed)
    return written


def check_correction(correction: str) -> None:
    if correction not in CORRECTIONS:
        raise ConfigError(f"--correction expects one of: {', '.join(CORRECTIONS)}; got {correction!r}")


def check_baselines(baselines: tuple[str, ...], selected: dict[str, pd.DataFrame]) -> None:
    """At least one baseline, each a loss with runs (a filter may hide it from the rows, not from the tests)."""
    present = {loss for runs in selected.values() for loss in runs["loss"]}
    unknown = [name for name in baselines if name not in present]
    if not baselines or unknown:
        raise ConfigError(f"no results for baseline {', '.join(map(repr, unknown)) or '(none given)'}; "
                          f"expected one or more of: {', '.join(sorted(present))}")


def write_dataset_report(
    directory: Path, dataset: str, runs: pd.DataFrame, losses: list[str] | None, console: Console | bool,
    baselines: tuple[str, ...] = BASELINES, correction: str = "holm", include_collapsed: bool = False,
) -> list[Path]:
    """The files of one dataset; the leaderboard goes to ``console`` unless it is False."""
    table = leaderboard(runs, losses, baselines, correction, include_collapsed)
    runs, collapsed = collapsed_apart(runs, include_collapsed)
    reference = published(dataset)
    if reference is not None:
        table = reference.join(table)
    shown = labelled(table)
    runs = runs.merge(shown[[*RECIPE, "group", "label"]], on=RECIPE)
    about = caption(runs)
    across_pairs = friedman_over_pairs(shown)
    protocols = resampled_comparisons(dataset, runs)
    notes = [column_notes(correction), *map(friedman_note, across_pairs), *map(protocol_note, protocols)]
    notes += [reference.note] if reference is not None else []
    collapse_note = collapse_line(collapsed)
    notes += [collapse_note] if collapse_note else []

    csv, markdown, page = directory / "leaderboard.csv", directory / "leaderboard.md", directory / "report.html"
    texts = {csv: table.to_csv(index=False, float_format="%.4f"),
             markdown: leaderboard_markdown(dataset, shown, about, notes, collapsed)}
    with tempfile.TemporaryDirectory(dir=directory, prefix=".plots.") as staging:  # every file made before any is written
        staged, captions = write_plots(Path(staging), shown, runs, across_pairs, protocols)
        pictures = {f: captions[f.stem] for f in staged if f.suffix == ".png"}
        texts[page] = report_html(dataset, shown, about, notes, pictures)
        figures = [directory / "plots" / f.name for f in staged]
        (directory / "plots").mkdir(exist_ok=True)
        for made, figure in zip(staged, figures):
            os.replace(made, figure)
    for path, text in texts.items():
        atomic_write_text(path, text)
    if console is not False:
        console.print(leaderboard_tables(dataset, shown, caption(runs, list_commands=False), console))
        if collapse_note:
            console.print(collapse_note, markup=False)
    return [csv, markdown, *figures, page]
