"""Tung & Mori, "Similarity-Preserving Knowledge Distillation" (ICCV 2019)."""

import torch.nn.functional as F
from torch import Tensor

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, register_loss
from losses.numerics import fp32
from losses.stages import stage_pairs


def similarity_matrix(features: Tensor) -> Tensor:
    """G = A A^T over flattened activations, each row L2-normalised (paper Eq. 1-2)."""
    flat = features.flatten(1)
    return F.normalize(flat @ flat.T, dim=1)


@fp32
def similarity_distance(student: Tensor, teacher: Tensor) -> Tensor:
    """||G_T - G_S||_F^2 / b^2 (paper Eq. 3)."""
    return (similarity_matrix(teacher) - similarity_matrix(student)).pow(2).mean()


@register_loss("sp")
class SP(DistillLoss):
    """Make the student's batch similarity matrices match the teacher's.

    ``stages`` defaults to ``[-1]``, the last stage before pooling: RepDistiller's ``feat[-2]``
    for a CIFAR ResNet. A b x b similarity matrix does not depend on channels or resolution, so any
    two architectures compare directly. A constant stage gives zero rows, which ``F.normalize``
    keeps at zero (eps-guarded) instead of 0/0.

    Reference implementation: HobbitLong/RepDistiller, distiller_zoo/SP.py (Similarity).
    Deviations: none.
    """

    needs = frozenset({Need.FEATURES})
    batchwise = True
    description = "batch similarity-matrix matching (Tung & Mori 2019)"

    def __init__(self, ctx: LossContext, *, stages: list[int]):
        super().__init__(ctx)
        self.pairs = stage_pairs(ctx, stages)

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> Tensor:
        return sum(similarity_distance(student.features[s], teacher.features[t]) for s, t in self.pairs)
