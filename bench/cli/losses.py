"""``bench losses list``: every registered loss with provider, needs and description."""

from rich.console import Console
from rich.table import Table

from bench.cli.app import losses_app
from losses import LOSSES


@losses_app.command("list")
def list_losses() -> None:
    """Show every loss: name, aliases, provider and version, what it needs, what it is."""
    table = Table("loss", "aliases", "provider", "needs", "description")
    for entry in LOSSES:
        try:
            cls = entry.load()
            needs = ", ".join(sorted(n.value for n in cls.needs)) or "-"
            description = cls.description
        except Exception as exc:  # a broken plugin is listed as broken, never crashes the listing
            needs, description = "?", f"[red]broken: {exc}[/red]"
        table.add_row(entry.name, ", ".join(entry.aliases), f"{entry.provider} {entry.version}", needs, description)
    Console().print(table)
