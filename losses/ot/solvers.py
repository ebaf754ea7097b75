"""The OT solvers a loss can name, each with the settings it must be given.

A solver's settings are the keyword-only arguments of its function in ``losses.ot.functional``
(minus the per-call data ``projections`` and ``generator``), so the functional signature is the one
place they are defined. Losses pass every setting explicitly: the recipe, not a default in code,
decides each resolved value, and the harness records it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from losses.ot import functional
from registry import ConfigError

SOLVERS: dict[str, Callable[..., Tensor]] = {
    "emd": functional.emd,
    "ipot": functional.ipot,
    "sinkhorn": functional.sinkhorn,
    "sinkdiv": functional.sinkhorn_divergence,
    "sliced": functional.sliced_wasserstein,
    "maxsliced": functional.max_sliced_wasserstein,
}
_PER_CALL = {"projections", "generator"}
_RANDOMISED = {name for name, fn in SOLVERS.items() if "generator" in inspect.signature(fn).parameters}


def settings_of(name: str) -> tuple[str, ...]:
    """The setting names of one solver, sorted."""
    parameters = inspect.signature(SOLVERS[name]).parameters.values()
    return tuple(sorted(p.name for p in parameters if p.kind is p.KEYWORD_ONLY and p.name not in _PER_CALL))


@dataclass(frozen=True)
class Solver:
    """One OT distance with all its settings fixed: ``solver(x, y, generator) -> Tensor``."""

    name: str
    options: dict

    def __call__(self, x: Tensor, y: Tensor, generator: torch.Generator | None) -> Tensor:
        extra = {"generator": generator} if self.name in _RANDOMISED else {}
        return SOLVERS[self.name](x, y, **self.options, **extra)


def ot_solver(name: str, **options) -> Solver:
    """Validate a solver name and its complete settings, and return the configured solver.

    The solver runs once on a 3-point toy problem so that an invalid value (an unknown cost,
    ``eps <= 0``, ...) fails when the loss is built, with the functional API's own message.
    """
    if name not in SOLVERS:
        raise ConfigError(f"unknown OT solver '{name}'; expected one of: {', '.join(sorted(SOLVERS))}")
    expected = settings_of(name)
    if tuple(sorted(options)) != expected:
        raise ConfigError(
            f"OT solver '{name}' takes exactly the settings {', '.join(expected)}; got {', '.join(sorted(options)) or 'none'}"
        )
    solver = Solver(name, dict(options))
    toy = torch.linspace(0, 1, 6).reshape(3, 2)
    solver(toy, toy.flip(0), torch.Generator().manual_seed(0))
    return solver
