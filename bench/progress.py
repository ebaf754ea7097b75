"""Progress of long work: rich bars on a terminal, one line per epoch otherwise, nothing with --quiet."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class Reporter:
    """What the harness tells the user while it works."""

    def __init__(self, quiet: bool = False, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self.live = not quiet and self.console.is_terminal
        self._progress: Progress | None = None
        self._task = None

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, highlight=False)

    @contextmanager
    def epoch(self, label: str, batches: int) -> Iterator["Reporter"]:
        """Bracket one epoch of ``batches`` steps; call ``advance()`` after each step."""
        if not self.live:
            yield self
            return
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), console=self.console, transient=True) as progress:
            self._progress, self._task = progress, progress.add_task(label, total=batches)
            try:
                yield self
            finally:
                self._progress = None

    def advance(self) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)
