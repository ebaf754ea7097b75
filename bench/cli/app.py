"""The ``bench`` command tree; each sub-module of ``bench.cli`` adds its commands to ``app``."""

import os
import sys

import typer
from rich.console import Console

app = typer.Typer(
    name="bench",
    help="distillbench: which distillation loss trains the best student, at what cost?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
losses_app = typer.Typer(help="The loss registry and the plugin conformance kit.", no_args_is_help=True)
perf_app = typer.Typer(help="Performance benchmarks (they measure; they never assert timings).", no_args_is_help=True)
app.add_typer(losses_app, name="losses")
app.add_typer(perf_app, name="perf")

invocation = ["bench"]  # the command line being run, recorded with every result (set by ``main``)


PIPED_WIDTH = 100  # a pager or a log: wide tables drop their least needed columns (bench.report.console)


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """The reader stopped (``bench ... | head -1``): ended quietly by ``bench.cli.main``, not with rich's exit 1."""
        raise BrokenPipeError


def console() -> Console:
    """Tables for a terminal at its width; piped output at ``COLUMNS`` when set, else ``PIPED_WIDTH``."""
    return _Console() if sys.stdout.isatty() or "COLUMNS" in os.environ else _Console(width=PIPED_WIDTH)
