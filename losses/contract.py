"""What a loss's call must return, checked alike by the conformance kit (``bench losses check``) and by
``bench run`` on a run's first batch: a scalar tensor or a dict of named scalars, finite, and (for a loss
that reads the student) a value whose gradient reaches the student's outputs."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor

from losses.base import Outputs
from registry import ConfigError


class LossContractError(ConfigError):
    """A loss returned something the harness cannot train with; the message says what."""


def named_terms(returned: object) -> dict[str, Tensor]:
    """A loss's return value as named scalar terms; anything else raises ``LossContractError``."""
    named = dict(returned) if isinstance(returned, Mapping) else {"loss": returned}
    for name, term in named.items():
        if not isinstance(term, Tensor) or term.dim() != 0:
            got = f"shape {list(term.shape)}" if isinstance(term, Tensor) else type(term).__name__
            raise LossContractError(f"term '{name}' is {got}; a loss returns a scalar tensor or a dict of them")
    return named


def named_tensors(outputs: Outputs, side: str) -> list[tuple[str, Tensor]]:
    """Every tensor of ``outputs`` with its name ("student.features[2]")."""
    items = [("logits", outputs.logits), *((f"features[{i}]", f) for i, f in enumerate(outputs.features)),
             ("embedding", outputs.embedding), ("feature_map", outputs.feature_map),
             *((f"preact_features[{i}]", f) for i, f in enumerate(outputs.preact_features))]
    return [(f"{side}.{name}", t) for name, t in items if t is not None]


def finite_problem(value: Tensor) -> str | None:
    """Why ``value`` cannot be trained on, if it is not finite (one host sync)."""
    return None if bool(torch.isfinite(value).all()) else f"value is {value.item()}"


def gradient_problem(value: Tensor, student: Sequence[Tensor]) -> str | None:
    """Why no gradient of ``value`` can reach the student's output tensors ``student`` (the value is detached
    from them), or None. Nothing is accumulated and the graph is kept: the caller may still backpropagate."""
    reachable = [t for t in student if t.requires_grad]
    if value.requires_grad and reachable:
        grads = torch.autograd.grad(value.float(), reachable, retain_graph=True, allow_unused=True)
        if any(g is not None for g in grads):
            return None
    return "the value does not depend on the student's outputs: no gradient reaches the student"
