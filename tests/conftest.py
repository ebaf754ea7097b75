"""Shared fixtures: the CLI in-process, and a synthetic benchmark run in temporary directories."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.cli import main


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """Run ``bench ARGS...`` in-process and capture its exit code and output."""

    def invoke(*args: str) -> CliResult:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke


@pytest.fixture(scope="session")
def teacher_cache(tmp_path_factory) -> Path:
    """One cache directory per test session, so the synthetic teacher is trained once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True, scope="session")
def one_thread_per_worker():
    """Tiny models run fastest on one thread, and tests run in parallel workers (``-n 2``)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
