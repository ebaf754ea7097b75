"""What a loss setting may be, beyond its type: the interval its values lie in, and the part of it
``bench tune`` searches (``bench/recipes/settings.toml``).

A value outside its interval (``--set kd.T=-4``, a negative weight) is refused before any work, so
a run never trains a setting its loss cannot mean. Plugin losses get the harness's own declarations
(weight and ce_weight non-negative); their hyperparameters are checked against their type only.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache
from typing import Any, Mapping

from registry import ConfigError

SETTINGS_FILE = "settings.toml"
FIELDS = ("valid", "search", "scale", "log")
_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,\s]+)\s*,\s*([^,\s]+)\s*([\])])\s*$")


@dataclass(frozen=True)
class Interval:
    """Real numbers between ``low`` and ``high``, each end closed or open; written as "[0, inf)"."""

    low: float = -math.inf
    high: float = math.inf
    low_closed: bool = False
    high_closed: bool = False

    @classmethod
    def parse(cls, text: str, where: str) -> "Interval":
        match = _INTERVAL.match(str(text))
        try:
            low, high = float(match[2]), float(match[3])
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: valid = {text!r} is not an interval; expected e.g. \"(0, inf)\" or "
                              f"\"[0, 1]\"") from None
        if not low <= high:
            raise ConfigError(f"{where}: valid = {text!r} is empty; expected its low end first")
        return cls(low, high, match[1] == "[", match[4] == "]")

    def __contains__(self, value: float) -> bool:
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return above and below

    def __str__(self) -> str:
        return f"{'[' if self.low_closed else '('}{self.low:g}, {self.high:g}{']' if self.high_closed else ')'}"


EVERYTHING = Interval()
NON_NEGATIVE = Interval(0.0, math.inf, True, False)
HARNESS = {"weight": NON_NEGATIVE, "ce_weight": NON_NEGATIVE}  # the harness's own settings, for every loss


@dataclass(frozen=True)
class Declaration:
    """One setting: its valid interval and, when it is searched, its bounds (absolute, or ``scale`` times
    the recipe's value) and whether the search is on a log scale."""

    valid: Interval = EVERYTHING
    search: tuple[Any, Any] | None = None
    scale: tuple[float, float] | None = None
    log: bool = False

    @property
    def searched(self) -> bool:
        return self.search is not None or self.scale is not None


def parse_declaration(table: Any, where: str, default_valid: Interval = EVERYTHING) -> Declaration:
    """A ``settings.toml`` entry (also what ``bench tune --space`` takes) -> Declaration."""
    if not isinstance(table, Mapping) or not table or set(table) - set(FIELDS):
        raise ConfigError(f"{where}: expected a table of {', '.join(FIELDS)}, e.g. {{ search = [1.0, 8.0] }}; "
                          f"got {table!r}")
    valid = Interval.parse(table["valid"], where) if "valid" in table else default_valid
    bounds = {}
    for name in ("search", "scale"):
        value = table.get(name)
        if value is not None and not (isinstance(value, list) and len(value) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
            raise ConfigError(f"{where}: {name} = {value!r}; expected two finite numbers [low, high]")
        bounds[name] = None if value is None else tuple(value)
    if bounds["search"] and bounds["scale"]:
        raise ConfigError(f"{where}: give search (absolute bounds) or scale (multiples of the recipe's value), not both")
    if not isinstance(table.get("log", False), bool):
        raise ConfigError(f"{where}: log = {table['log']!r}; expected true or false")
    return Declaration(valid, bounds["search"], bounds["scale"], table.get("log", False))


@cache
def declarations() -> dict[str, dict[str, Declaration]]:
    """loss -> setting -> Declaration, from ``bench/recipes/settings.toml`` (weights default to HARNESS)."""
    from bench.recipes.resolve import RECIPES, load_toml

    table = load_toml(RECIPES / SETTINGS_FILE)
    return {loss: {key: parse_declaration(entry, f"{SETTINGS_FILE} {loss}.{key}", HARNESS.get(key, EVERYTHING))
                   for key, entry in keys.items()} for loss, keys in table.items()}


def declaration(loss: str, key: str) -> Declaration:
    """The declaration of ``loss.key``: its entry in settings.toml, else the harness's (or none) for it."""
    found = declarations().get(loss, {}).get(key)
    return found if found is not None else Declaration(HARNESS.get(key, EVERYTHING))


def check_in_range(loss: str, key: str, value: Any) -> None:
    """Refuse a number (or a list's number) outside the setting's valid interval."""
    valid = declaration(loss, key).valid
    items = value if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if isinstance(item, (int, float)) and not isinstance(item, bool) and item not in valid:
            shown = f"{loss}.{key} = {value!r}" if item is value else f"{loss}.{key} = {value!r} (item {item!r})"
            raise ConfigError(f"{shown} is outside its valid range {valid}")
