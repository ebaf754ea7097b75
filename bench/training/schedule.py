"""A student's learning rate over training, as its recipe names it.

``step`` is the CRD protocol's: the rate times ``gamma`` at each milestone epoch. ``cosine`` anneals
the rate to zero batch by batch over the whole run (Loshchilov & Hutter's SGDR without restarts), so
that even a one-epoch schedule ends at a small rate and its numbers settle.
"""

from __future__ import annotations

import torch

SCHEDULES = ("step", "cosine")


class Schedule:
    """The recipe's scheduler, stepped where it changes the rate: after each batch or after each epoch."""

    def __init__(self, optimizer: torch.optim.Optimizer, kind: str, epochs: int, milestones: tuple[int, ...],
                 gamma: float, steps_per_epoch: int | None):
        self.per_batch = kind == "cosine"
        if self.per_batch:
            if not steps_per_epoch:
                raise ValueError("a cosine schedule needs the number of steps per epoch")
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
        else:
            self.scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(milestones), gamma)

    def after_batch(self) -> None:
        if self.per_batch:
            self.scheduler.step()

    def after_epoch(self) -> None:
        if not self.per_batch:
            self.scheduler.step()

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)
