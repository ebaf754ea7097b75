"""``results/<dataset>/tuned.toml``: each loss's best settings from a search, and what that search was.

``[searches.<id>]`` records a search's budget, objective, split and seed; ``[losses.<name>]`` the
settings ``bench run --tuned`` lays over the recipe (under ``--set``), the trial they come from and
its score. A later search replaces the entries of the losses it tuned and keeps every other one.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Mapping

import tomli_w
from filelock import FileLock

from bench.store.results import atomic_write_text
from registry import ConfigError

OVERLAY = "tuned.toml"
HEADER = ("# Written by `bench tune`: each loss's settings from the search named beside it, chosen on the\n"
          "# validation split. `bench run --tuned` applies them; regenerate with the search's command.\n")


def overlay_path(results_dir: Path, dataset: str) -> Path:
    return Path(results_dir) / dataset / OVERLAY


def read_overlay(path: Path) -> dict[str, Any]:
    """The overlay as written, or a one-line error naming how to make one."""
    if not path.is_file():
        raise ConfigError(f"--tuned: {path} does not exist; expected the file `bench tune` writes there")
    try:
        overlay = tomllib.loads(path.read_text())
        for name, entry in overlay.get("losses", {}).items():
            overlay["searches"][entry["search"]]  # every loss names a recorded search
            dict(entry["settings"])
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"--tuned: {path} is not a tuned.toml of bench tune ({type(exc).__name__}: {exc})") from None
    return overlay


def write_overlay(path: Path, search_id: str, search: Mapping[str, Any], losses: Mapping[str, Mapping[str, Any]]) -> None:
    """Record ``search`` and its losses' entries, keeping the entries of other searches' losses."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_name(f".{OVERLAY}.lock")):
        current = read_overlay(path) if path.is_file() else {}
        kept = {name: entry for name, entry in current.get("losses", {}).items() if name not in losses}
        merged = {**kept, **losses}
        used = {entry["search"] for entry in merged.values()} | {search_id}
        searches = {key: value for key, value in current.get("searches", {}).items() if key in used}
        searches[search_id] = dict(search)
        document = {"searches": dict(sorted(searches.items())), "losses": dict(sorted(merged.items()))}
        atomic_write_text(path, HEADER + tomli_w.dumps(document))


def tuned_settings(overlay: Mapping[str, Any], loss: str, pair: str, path: Path) -> tuple[str, dict[str, Any]]:
    """(search id, settings) of ``loss``; refused where it was not tuned, or tuned for another pair."""
    entry = overlay.get("losses", {}).get(loss)
    if entry is None:
        tuned = ", ".join(overlay.get("losses", {})) or "none"
        raise ConfigError(f"--tuned: {path} has no settings for '{loss}'; tuned losses: {tuned}")
    search = overlay["searches"][entry["search"]]
    if search.get("pair") != pair:
        raise ConfigError(f"--tuned: {loss} was tuned on pair {search.get('pair')}, not {pair}; expected "
                          f"--pair {search.get('pair')} or a search on {pair}")
    return entry["search"], dict(entry["settings"])
