"""Zagoruyko & Komodakis, "Paying More Attention to Attention" (ICLR 2017)."""

import torch.nn.functional as F
from torch import Tensor

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, register_loss
from losses.checks import positive
from losses.connectors import align_spatial
from losses.numerics import fp32
from losses.stages import stage_pairs


def attention_map(features: Tensor, p: float) -> Tensor:
    """Q = vec(mean_c |A_c|^p) / ||.||_2, one row per example (paper Eq. 2 and §3.1)."""
    return F.normalize(features.abs().pow(p).mean(dim=1).flatten(1), dim=1)


@fp32
def attention_distance(student: Tensor, teacher: Tensor, p: float) -> Tensor:
    """Mean squared difference of the two attention maps (the authors' ``at_loss``)."""
    student, teacher = align_spatial(student, teacher)
    return (attention_map(student, p) - attention_map(teacher, p)).pow(2).mean()


@register_loss("at")
class AT(DistillLoss):
    """Match the spatial attention maps of several stages, summed over stages.

    The per-stage term is the authors' ``at_loss`` (szagoruyko/attention-transfer ``utils.py``,
    also RepDistiller ``distiller_zoo/AT.py``): mean over batch and positions of the squared
    difference of L2-normalised maps. ``p=2`` is the paper's choice. ``stages`` defaults to
    ``[-3, -2, -1]``: for a CIFAR ResNet (stem + 3 groups) the three groups, RepDistiller's
    ``feat[1:-1]``; negative indices pair the last stages of models of different depth. An
    attention map has no channel axis, so channel counts may differ; maps of different resolution
    are pooled to the smaller one, as in RepDistiller.

    Reference implementation: HobbitLong/RepDistiller, distiller_zoo/AT.py (Attention).
    Deviations: none.
    """

    needs = frozenset({Need.FEATURES})
    description = "spatial attention-map matching at several stages (Zagoruyko & Komodakis 2017)"

    def __init__(self, ctx: LossContext, *, stages: list[int], p: float):
        super().__init__(ctx)
        self.pairs = stage_pairs(ctx, stages)
        self.p = positive("at: p", p)

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> Tensor:
        return sum(attention_distance(student.features[s], teacher.features[t], self.p) for s, t in self.pairs)
