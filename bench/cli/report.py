"""``bench report``: leaderboards, figures and an HTML page from the recorded runs, or one comparison in full."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bench.cli.app import app, console


def names(text: str | None) -> list[str] | None:
    """A comma-separated filter as a list; None (no filter) when not given."""
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


def loss_names(text: str | None) -> list[str] | None:
    """Loss names as runs.csv records them: an alias ``bench run`` accepts (``ot``) as the loss it names; a
    name the registry lacks (a plugin since removed) as it is, to be looked up in the runs."""
    from losses import LOSSES

    return None if text is None else [LOSSES.canonical(name) if name in LOSSES else name for name in names(text)]


@app.command()
def report(
    results_dir: Annotated[Path, typer.Option(help="Where 'bench run' wrote <dataset>/runs.csv.")] = Path("results"),
    dataset: Annotated[Optional[str], typer.Option(help="Only these datasets (comma-separated).")] = None,
    pair: Annotated[Optional[str], typer.Option(help="Only these teacher-student pairs (comma-separated).")] = None,
    losses: Annotated[Optional[str], typer.Option(help="Only these losses (comma-separated).")] = None,
    baseline: Annotated[Optional[str], typer.Option(
        help="Test every loss against these, paired by seed (comma-separated; default vanilla,kd).")] = None,
    correction: Annotated[str, typer.Option(
        help="How the marks' p-values are corrected over each comparison's losses: holm (family-wise error "
             "rate) or bh (Benjamini-Hochberg, false discovery rate).")] = "holm",
    compare: Annotated[Optional[str], typer.Option(
        metavar="A,B", help="Print loss A against loss B seed by seed, with CI and p-values; writes nothing.")] = None,
    compare_protocols: Annotated[Optional[str], typer.Option(
        metavar="P,Q", help="Print Kendall's tau between protocol P's and Q's rankings; writes nothing.")] = None,
    include_collapsed: Annotated[bool, typer.Option(
        "--include-collapsed", help="Count collapsed runs (at chance, or one class predicted) in means, tests, ranks "
                                    "and tau [default: left out and listed apart].")] = False,
) -> None:
    """Write leaderboard.csv/.md, plots/ and report.html per dataset, and print the leaderboard."""
    from bench.report import build_report  # pandas and matplotlib load only when a report is made
    from bench.report import compare as comparisons
    from bench.report.runs import collapsed_apart, select_runs

    if compare or compare_protocols:  # printed in full; every name is checked before anything prints
        loss_pair = compare and comparisons.two_names("loss", ",".join(loss_names(compare)))
        protocol_pair = compare_protocols and comparisons.two_names("protocol", compare_protocols)
        selected = {name: collapsed_apart(runs, include_collapsed)[0]
                    for name, runs in select_runs(results_dir, names(dataset), names(pair), loss_names(losses)).items()}
        printed = [comparisons.compare_losses(selected, *loss_pair)] if loss_pair else []
        printed += [comparisons.compare_protocols(selected, *protocol_pair)] if protocol_pair else []
        for part in printed:
            console().print(part)
        return
    written = build_report(results_dir, datasets=names(dataset), pairs=names(pair), losses=loss_names(losses),
                           console=console(), baselines=None if baseline is None else tuple(loss_names(baseline)),
                           correction=correction, include_collapsed=include_collapsed)
    for page in (path for path in written if path.name == "report.html"):
        typer.echo(f"report: {page}")
