"""Progress of long work: rich bars on a terminal; in a log, a line at every tenth of an epoch with
the time elapsed and left; nothing with --quiet."""

from __future__ import annotations

import time
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
        self._logged: _LoggedEpoch | None = None

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, highlight=False, soft_wrap=True)  # a log line stays one line

    @contextmanager
    def epoch(self, label: str, batches: int) -> Iterator["Reporter"]:
        """Bracket one epoch of ``batches`` steps; call ``advance()`` after each step."""
        if not self.live:
            self._logged = None if self.quiet else _LoggedEpoch(self, label, batches)
            try:
                yield self
            finally:
                self._logged = None
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
        elif self._logged is not None:
            self._logged.advance()


class _LoggedEpoch:
    """Progress as plain lines, one per tenth of the epoch, for logs where a bar cannot redraw;
    an epoch shorter than a few seconds logs nothing but its summary."""

    TENTHS = 10
    FIRST_AFTER_S = 5.0

    def __init__(self, reporter: Reporter, label: str, batches: int):
        self.reporter, self.label, self.batches = reporter, label, batches
        self.done, self.started = 0, time.perf_counter()
        self.next_report = 1

    def advance(self) -> None:
        self.done += 1
        if self.done * self.TENTHS < self.next_report * self.batches or self.done == self.batches:
            return
        self.next_report = self.done * self.TENTHS // self.batches + 1
        elapsed = time.perf_counter() - self.started
        if elapsed < self.FIRST_AFTER_S:
            return
        left = elapsed * (self.batches - self.done) / self.done
        self.reporter.info(f"{self.label}: {self.done}/{self.batches} batches, "
                           f"{_clock(elapsed)} elapsed, about {_clock(left)} left")


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"
