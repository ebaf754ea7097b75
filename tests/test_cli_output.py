"""What the user reads: every command's --help whole at 80 columns, ``python -m bench``, and a pipe closed
early (``bench ... | head -1``) ending the command quietly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer

from bench.cli import app

ROOT = Path(__file__).resolve().parents[1]


def commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    """Every command of the CLI with the words that name it, the groups' own included."""
    found = [(path, group)]
    for name, command in group.commands.items():
        found += commands(command, (*path, name)) if isinstance(command, click.Group) else [((*path, name), command)]
    return found


COMMANDS = commands(typer.main.get_command(app))


def squeeze(text: str) -> str:
    """Without line breaks and indents (click may also break a line at a hyphen)."""
    return "".join(text.split())


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "bench" for p, _ in COMMANDS])
def test_help_at_80_columns_shows_every_option_name_and_description_whole(path, command, cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    result = cli(*path, "--help")
    assert result.code == 0, result.err
    assert max(map(len, result.out.splitlines())) <= 80
    printed = squeeze(result.out)
    for option in (p for p in command.params if not getattr(p, "hidden", False)):  # hidden: for bench sweep's workers
        for name in (*option.opts, *option.secondary_opts):
            assert name in printed, f"{name} missing from 'bench {' '.join(path)} --help'"
        if getattr(option, "help", None):  # "bf16 autocast [default: on for CUDA]." not "bf16 autocast ."
            assert squeeze(option.help) in printed, option.help
    assert " ." not in " ".join(result.out.split())


def run_module(*args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    return subprocess.Popen([sys.executable, "-m", "bench", *args], env=env, stderr=subprocess.PIPE, text=True,
                            **popen)


def test_python_dash_m_bench_is_the_bench_command():
    done = run_module("pairs", "list", stdout=subprocess.PIPE)
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    assert "resnet32x4-resnet8x4" in out


def test_a_pipe_closed_early_ends_the_command_quietly():
    reading = run_module("losses", "list", stdout=subprocess.PIPE)
    reading.stdout.close()  # as `head -1` does once it has its line: every later write finds no reader
    err = reading.stderr.read()
    assert reading.wait(timeout=120) == 0 and err == ""
