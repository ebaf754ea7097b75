"""``bench losses list`` and ``bench losses check``: the registry, and the conformance kit for one loss."""

from typing import Annotated

import typer
from rich.table import Table

from bench.cli.app import console, losses_app
from losses import LOSSES

STATUS_STYLE = {"pass": "[green]pass[/green]", "warn": "[yellow]warn[/yellow]", "fail": "[red]FAIL[/red]"}


@losses_app.command("list")
def list_losses() -> None:
    """Show every loss: name, aliases, provider and version, what it needs, what it is."""
    table = Table("loss", "aliases", "provider", "needs", "description")
    for entry in LOSSES:
        try:
            cls = entry.load()
            needs = ", ".join(sorted(n.value for n in cls.needs)) or "-"
            description = cls.description
        except Exception as exc:  # a broken plugin or a name clash is listed as such, never crashes the listing
            needs, description = "?", f"[red]{'clash' if entry.clash else 'broken'}: {exc}[/red]"
        table.add_row(entry.name, ", ".join(entry.aliases), f"{entry.provider} {entry.version}", needs, description)
    console().print(table)


@losses_app.command("check")
def check_loss(name: Annotated[str, typer.Argument(help="Loss name or alias (see 'bench losses list').")]) -> None:
    """Run the conformance checks on one loss; exit code 1 when any check fails."""
    from bench.conformance import run_checks  # builds timm models: only imported for this command

    entry = LOSSES.entry(name)
    results = run_checks(name)
    table = Table("check", "verifies", "result", "detail", "s",
                  title=f"{entry.name} ({entry.provider} {entry.version})")
    for result in results:
        table.add_row(result.check, result.description, STATUS_STYLE[result.status], result.detail,
                      f"{result.seconds:.1f}")
    out = console()
    out.print(table)
    failed = [r.check for r in results if not r.passed]
    warned = [r.check for r in results if r.status == "warn"]
    out.print(f"{len(results) - len(failed)} of {len(results)} checks passed"
              + (f"; with a warning: {', '.join(warned)}" if warned else "")
              + (f"; failed: {', '.join(failed)}" if failed else ""))
    if failed:
        raise typer.Exit(1)
