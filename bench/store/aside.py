"""Damaged files set aside: each copy under its own dated name, never overwriting an earlier one.

A damaged ``runs.csv`` is copied, a damaged cached checkpoint is moved, to
``<name>.<UTC time>.<random>.damaged`` in the same folder. The random part comes from ``mkstemp``,
which creates the file exclusively, so processes sharing a folder never pick the same name, and a
second damage never replaces what the first one kept.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

SUFFIX = ".damaged"


def _reserve(path: Path) -> Path:
    """A new empty file beside ``path``, named after it and the time, that no one else can have."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.{stamp}.", suffix=SUFFIX)
    os.close(handle)
    return Path(name)


def copy_aside(path: Path) -> Path:
    """Keep a copy of ``path`` as it is now; returns the copy's path."""
    kept = _reserve(path)
    shutil.copyfile(path, kept)
    os.chmod(kept, 0o644)  # mkstemp creates 0600; results are meant to be shared
    return kept


def move_aside(path: Path) -> Path | None:
    """Move ``path`` out of the way; None when another process moved it first."""
    kept = _reserve(path)
    try:
        os.replace(path, kept)  # replaces only the empty file reserved above
    except FileNotFoundError:
        kept.unlink()
        return None
    return kept


def set_aside(directory: Path) -> list[Path]:
    """Every file set aside in ``directory`` (by name: by original file, then by time)."""
    return sorted(directory.glob(f"*{SUFFIX}"))
