"""Huang & Wang, "Like What You Like: Knowledge Distill via Neuron Selectivity Transfer" (2017)."""

import torch.nn.functional as F
from torch import Tensor

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, register_loss
from losses.connectors import align_spatial
from losses.numerics import fp32
from losses.stages import stage_pairs


@fp32
def selectivity_mmd(student: Tensor, teacher: Tensor) -> Tensor:
    """Squared MMD between the two sets of neuron selectivity patterns (paper Eq. 5-6).

    Each channel's spatial map is one sample, L2-normalised; the kernel is the paper's
    polynomial k(x, y) = (x^T y)^2 (d=2, c=0). Averaged over the batch and channel pairs, so
    student and teacher may have different channel counts.
    """
    student, teacher = align_spatial(student, teacher)
    s = F.normalize(student.flatten(2), dim=2)
    t = F.normalize(teacher.flatten(2), dim=2)

    def kernel(a: Tensor, b: Tensor) -> Tensor:
        return (a @ b.transpose(1, 2)).pow(2).mean()

    return kernel(t, t) + kernel(s, s) - 2 * kernel(s, t)


@register_loss("nst")
class NST(DistillLoss):
    """Match the distribution of neuron selectivity patterns at several stages (MMD, polynomial kernel).

    ``stages`` defaults to ``[-3, -2, -1]``: the three groups of a CIFAR ResNet, RepDistiller's
    ``feat[1:-1]`` (``distiller_zoo/NST.py``). Maps of different resolution are pooled to the
    smaller one, as in RepDistiller; all-zero maps stay zero under the eps-guarded normalisation.

    Reference implementation: HobbitLong/RepDistiller, distiller_zoo/NST.py (NSTLoss).
    Deviations: none.
    """

    needs = frozenset({Need.FEATURES})
    description = "neuron-selectivity MMD with a polynomial kernel (Huang & Wang 2017)"

    def __init__(self, ctx: LossContext, *, stages: list[int]):
        super().__init__(ctx)
        self.pairs = stage_pairs(ctx, stages)

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> Tensor:
        return sum(selectivity_mmd(student.features[s], teacher.features[t]) for s, t in self.pairs)
