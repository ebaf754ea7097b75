"""A loss's search space: the settings ``bench tune`` varies, as Optuna distributions.

Checked against each setting's type and valid range (``bench.recipes.settings``) before any trial runs, and
required to hold the recipe's value, which is always trial 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution

from bench.recipes.resolve import LossSpec, declared_type, hyperparameters
from bench.recipes.settings import declaration, declarations, parse_declaration
from losses import LOSSES
from registry import ConfigError


@dataclass(frozen=True)
class Dimension:
    """One searched setting: its bounds, on a log scale or not, integer or real."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def distribution(self) -> BaseDistribution:
        if self.integer:
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return FloatDistribution(float(self.low), float(self.high), log=self.log)


def initial_values(spec: LossSpec) -> dict[str, Any]:
    """Every setting of a resolved loss, weights included: trial 0's values."""
    return {"weight": spec.weight, "ce_weight": spec.ce_weight, **spec.params}


def search_space(spec: LossSpec, given: Mapping[str, Any]) -> dict[str, Dimension]:
    """The searched settings of ``spec``: settings.toml's, with ``given`` (``--space LOSS.KEY=TABLE``) on top."""
    name = spec.name
    chosen = {key: d for key, d in declarations().get(name, {}).items() if d.searched}
    for key, table in given.items():
        valid = declaration(name, key).valid
        chosen[key] = parse_declaration(table, f"--space {name}.{key}", valid)
        if chosen[key].valid != valid:
            raise ConfigError(f"--space {name}.{key}: a search space cannot change a setting's valid range {valid}")
    types = {"weight": float, "ce_weight": float,
             **{key: declared_type(p) for key, p in hyperparameters(LOSSES.get(name)).items()}}
    values = initial_values(spec)
    space = {}
    for key, declared in chosen.items():
        where = f"search space of {name}.{key}"
        if key not in types:
            raise ConfigError(f"{where}: loss '{name}' has no setting {key}; expected one of: {', '.join(types)}")
        if types[key] not in (int, float):
            raise ConfigError(f"{where}: only number settings are searched; {key} is {types[key]}")
        integer = types[key] is int
        if not declared.searched:
            raise ConfigError(f"{where}: expected search = [low, high] or scale = [low, high]")
        if declared.scale is not None and integer:
            raise ConfigError(f"{where}: scale applies to real settings; give {key} integer search bounds")
        low, high = declared.search or tuple(values[key] * s for s in declared.scale)
        if integer and not all(isinstance(b, int) for b in (low, high)):
            raise ConfigError(f"{where}: {key} is an integer setting; got bounds [{low}, {high}]")
        if not low < high:
            raise ConfigError(f"{where}: bounds [{low:g}, {high:g}] are empty; expected low < high")
        if low not in declared.valid or high not in declared.valid:
            raise ConfigError(f"{where}: bounds [{low:g}, {high:g}] leave its valid range {declared.valid}")
        if declared.log and low <= 0:
            raise ConfigError(f"{where}: a log-scale search needs bounds above 0; got [{low:g}, {high:g}]")
        if not low <= values[key] <= high:
            raise ConfigError(f"{where}: bounds [{low:g}, {high:g}] leave out the recipe's value {values[key]!r}, "
                              f"which is trial 0")
        space[key] = Dimension(low, high, declared.log, integer)
    return space
