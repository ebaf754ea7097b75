"""No distillation: the plain cross-entropy student every leaderboard is measured against."""

import torch
from torch import Tensor

from losses.base import Batch, DistillLoss, Outputs, register_loss


@register_loss("vanilla")
class Vanilla(DistillLoss):
    """Cross-entropy only; the harness adds CE, so the distillation term is zero.

    Reference implementation: HobbitLong/RepDistiller, train_teacher.py (cross-entropy training of a network alone).
    Deviations: none.
    """

    needs = frozenset()
    description = "no distillation (cross-entropy baseline)"

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> Tensor:
        return torch.zeros((), device=batch.labels.device)
