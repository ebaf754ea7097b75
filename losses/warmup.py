"""A loss weight ramped in over the first part of a run, as DKD's and ReviewKD's authors train them.

A warm-up is declared as a fraction of the run, so that it scales with the protocol: the 20 epochs
of the CIFAR-100 protocol's 240 are ``1/12`` of it, on 240 epochs and on one. The ramp counts what
the authors' loops count, whole epochs (the factor is fixed within an epoch), whenever the warm-up
lasts at least one epoch; a shorter one (a one-epoch protocol) counts the run's steps instead, so
that it still ramps rather than jumping. Where the count starts is each method's own fact:
mdistiller numbers epochs from 1 (DKD's ``min(epoch / warmup, 1)`` is never 0), the ReviewKD
authors' ``for epoch in range(args.epochs)`` from 0 (their first epoch has weight 0).
"""

from __future__ import annotations

from losses.base import Batch
from losses.checks import unit_interval


def warmup_fraction(name: str, value: object) -> float:
    """A recipe's warm-up: the fraction of the run it lasts, in [0, 1] (0: no warm-up)."""
    return unit_interval(f"{name}: warmup (a fraction of the run)", value)


def warmup_factor(batch: Batch, fraction: float, first: int) -> float:
    """``min(1, (t + first) / length)``: ``t`` the 0-based epoch (or step of the run, for a warm-up shorter
    than an epoch), ``length`` the warm-up in the same unit, ``first`` 1 where the authors count from 1.

    1 without a warm-up, or when the run's length is unknown (a loss called outside a training run).
    """
    if fraction == 0 or batch.epochs is None:
        return 1.0
    length, position = fraction * batch.epochs, batch.epoch
    if length < 1 and batch.steps:
        length, position = length * batch.steps, batch.epoch * batch.steps + batch.step
    return min(1.0, (position + first) / length)
