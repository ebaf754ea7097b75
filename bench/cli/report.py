"""``bench report``: leaderboards, figures and an HTML page from the recorded runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bench.cli.app import app


def names(text: str | None) -> list[str] | None:
    """A comma-separated filter as a list; None (no filter) when not given."""
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


@app.command()
def report(
    results_dir: Annotated[Path, typer.Option(help="Where 'bench run' wrote <dataset>/runs.csv.")] = Path("results"),
    dataset: Annotated[Optional[str], typer.Option(help="Only these datasets (comma-separated).")] = None,
    pair: Annotated[Optional[str], typer.Option(help="Only these teacher-student pairs (comma-separated).")] = None,
    losses: Annotated[Optional[str], typer.Option(help="Only these losses (comma-separated).")] = None,
) -> None:
    """Write leaderboard.csv/.md, plots/ and report.html per dataset, and print the leaderboard."""
    from bench.report import build_report  # pandas and matplotlib load only when a report is made

    written = build_report(results_dir, datasets=names(dataset), pairs=names(pair), losses=names(losses))
    for page in (path for path in written if path.name == "report.html"):
        typer.echo(f"report: {page}")
