"""Progress in a log (no terminal): a line per tenth of an epoch with elapsed and remaining time."""

from __future__ import annotations

import io

from rich.console import Console

import bench.console.progress
from bench.console.progress import Reporter


def logged_lines(monkeypatch, batches: int, seconds_per_batch: float, quiet: bool = False) -> list[str]:
    now = [0.0]
    monkeypatch.setattr(bench.console.progress.time, "perf_counter", lambda: now[0])
    sink = io.StringIO()
    reporter = Reporter(quiet, Console(file=sink, width=200))
    with reporter.epoch("epoch 1/2 · kd", batches) as bar:
        for _ in range(batches):
            now[0] += seconds_per_batch
            bar.advance()
    return sink.getvalue().splitlines()


def test_long_epoch_logs_each_tenth_with_time_left(monkeypatch):
    lines = logged_lines(monkeypatch, batches=20, seconds_per_batch=1.0)
    # tenths at 2, 4, ..., 18 batches; the first two come before 5 s and stay silent; the end has its summary
    assert [line.split(":")[1].split(",")[0].strip() for line in lines] == [f"{n}/20 batches" for n in range(6, 20, 2)]
    assert lines[2] == "epoch 1/2 · kd: 10/20 batches, 10s elapsed, about 10s left"


def test_minutes_are_spelled_out(monkeypatch):
    lines = logged_lines(monkeypatch, batches=10, seconds_per_batch=30.0)
    assert lines[0] == "epoch 1/2 · kd: 1/10 batches, 30s elapsed, about 4m30s left"


def test_short_epochs_and_quiet_runs_log_nothing(monkeypatch):
    assert logged_lines(monkeypatch, batches=50, seconds_per_batch=0.01) == []
    assert logged_lines(monkeypatch, batches=20, seconds_per_batch=1.0, quiet=True) == []
