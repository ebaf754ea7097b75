"""Saving and loading training state: atomic writes under unique temporary names (runs may share a
cache), ``weights_only`` loads (no pickle code runs), and damaged cached files set aside instead of
blocking every rerun."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Callable

import torch
from filelock import FileLock

from bench.store.aside import move_aside
from bench.console.notices import warn
from registry import ConfigError

# What torch.load raises on a truncated or garbage file, and load_state_dict on a state that does not fit.
DAMAGE = (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, KeyError, TypeError, AttributeError)


class DamagedCheckpoint(ConfigError):
    """A checkpoint file that cannot be read."""


def save(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            torch.save(state, out)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def load(path: Path, device: torch.device) -> dict:
    if path.is_dir():
        raise DamagedCheckpoint(f"checkpoint {path} is a directory; expected a file")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except DAMAGE as exc:
        raise DamagedCheckpoint(f"checkpoint {path} is damaged ({_first_line(exc)})") from None


def restore(path: Path, device: torch.device, apply: Callable[[dict], object]) -> dict | None:
    """Load the cached checkpoint ``path`` and ``apply`` it; the state, or None when there is none to use.

    A damaged one is moved aside under a dated name of its own (said in one line), so the caller redoes the
    work from its last good state and the next run does not trip over it again.
    """
    if not path.is_file():
        return None
    try:
        state = load(path, device)
        apply(state)
        return state
    except DAMAGE as exc:
        aside = move_aside(path)
        reason = exc if isinstance(exc, DamagedCheckpoint) else f"checkpoint {path} does not fit ({_first_line(exc)})"
        where = f"moved to {aside}" if aside else "another process moved it aside"
        warn(f"{reason}: {where}; redoing its work")
        return None


def lock(path: Path) -> FileLock:
    """Held while the file ``path`` is being produced, so processes sharing a cache produce it once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path.with_name(f".{path.name}.lock"))


def _first_line(exc: BaseException) -> str:
    """The error in a few words: torch's first sentence, or for a refused unpickle what the unpickler met,
    without the advice about ``weights_only`` (loading untrusted files with it off is not an option here)."""
    text = str(exc).strip()
    _, _, detail = text.partition("WeightsUnpickler error:")
    if detail.strip():
        text = f"not a tensor checkpoint: {detail.strip().splitlines()[0]}"
    first = (text.splitlines() or [""])[0].split(". ")[0].rstrip(".")
    return f"{type(exc).__name__}: {first}".rstrip(": ")
