"""From ``runs.csv`` to every report file of a dataset: leaderboard CSV and markdown, figures, HTML page.

The filters are checked before anything is written; each text file is replaced atomically.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console

from bench.report.aggregate import RECIPE, leaderboard
from bench.report.console import leaderboard_tables
from bench.report.display import NOTES, caption, labelled
from bench.report.html import report_html
from bench.report.markdown import leaderboard_markdown
from bench.report.plots import write_plots
from bench.report.reference import published
from bench.report.runs import select_runs
from bench.results import atomic_write_text


def build_report(
    results_dir: Path,
    datasets: list[str] | None = None,
    pairs: list[str] | None = None,
    losses: list[str] | None = None,
    console: Console | bool | None = None,
) -> list[Path]:
    """Write the report of every selected dataset and return the files written.

    ``console``: where the leaderboard table is printed (None: stdout, False: nowhere).
    """
    results_dir = Path(results_dir)
    selected = select_runs(results_dir, datasets, pairs, losses)
    if console is None:
        console = Console()
    written = []
    for dataset, runs in selected.items():
        written += write_dataset_report(results_dir / dataset, dataset, runs, losses, console)
    return written


def write_dataset_report(
    directory: Path, dataset: str, runs: pd.DataFrame, losses: list[str] | None, console: Console | bool
) -> list[Path]:
    """The files of one dataset; the leaderboard goes to ``console`` unless it is False."""
    table = leaderboard(runs, losses)
    reference = published(dataset)
    if reference is not None:
        table = reference.join(table)
    shown = labelled(table)
    runs = runs.merge(shown[[*RECIPE, "group", "label"]], on=RECIPE)
    about = caption(runs)
    notes = [NOTES] + ([reference.note] if reference is not None else [])

    csv, markdown, page = directory / "leaderboard.csv", directory / "leaderboard.md", directory / "report.html"
    atomic_write_text(csv, table.to_csv(index=False, float_format="%.4f"))
    atomic_write_text(markdown, leaderboard_markdown(dataset, shown, about, notes))
    figures = write_plots(directory / "plots", shown, runs)
    atomic_write_text(page, report_html(dataset, shown, about, notes, [f for f in figures if f.suffix == ".png"]))
    if console is not False:
        console.print(leaderboard_tables(dataset, shown, about))
    return [csv, markdown, *figures, page]
