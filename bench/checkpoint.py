"""Saving and loading training state: atomic writes, and ``weights_only`` loads (no pickle code runs)."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def save(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def load(path: Path, device: torch.device) -> dict:
    return torch.load(path, map_location=device, weights_only=True)
