"""Full-precision loss math under mixed-precision training.

The harness may run both models under bf16 autocast. Relation matrices, normalisations and
exponentials lose digits there (a Gram matrix of unit vectors is off by ~1e-2 in bf16, and
``exp(s / 0.07)`` amplifies that error fourteen-fold), so loss math runs with autocast switched
off, on float32 copies of its inputs (float64 stays float64, for reference computations).
Learned parts (connectors, projection heads) stay under autocast: they are part of the model,
not of the formula.
"""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

import torch
from torch import Tensor

F = TypeVar("F", bound=Callable)


def fp32(fn: F) -> F:
    """Decorator: run ``fn`` with autocast off and its floating-point tensors in float32 (or float64)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        floats = [v for v in (*args, *kwargs.values()) if isinstance(v, Tensor) and v.is_floating_point()]
        dtype = torch.float64 if any(v.dtype == torch.float64 for v in floats) else torch.float32

        def cast(v):
            return v.to(dtype) if isinstance(v, Tensor) and v.is_floating_point() else v

        with torch.autocast(floats[0].device.type, enabled=False):
            return fn(*map(cast, args), **{k: cast(v) for k, v in kwargs.items()})

    return wrapper  # type: ignore[return-value]
