"""Ahn, Hu, Damianou, Lawrence & Dai, "Variational Information Distillation for Knowledge Transfer" (CVPR 2019)."""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, register_loss
from losses.checks import positive
from losses.connectors import align_spatial
from losses.numerics import fp32
from losses.stages import stage_pairs
from registry import ConfigError


@fp32
def gaussian_nll(mean: Tensor, target: Tensor, variance: Tensor) -> Tensor:
    """-log q(t | s) up to a constant: 0.5 (t - mu)^2 / sigma^2 + 0.5 log sigma^2, averaged (paper Eq. 4-5)."""
    variance = variance.view(1, -1, 1, 1)
    return (0.5 * ((mean - target).pow(2) / variance + variance.log())).mean()


class VariationalHead(nn.Module):
    """mu(student stage) by three 1x1 convs; a per-channel variance softplus(alpha_c) + eps (paper §3)."""

    def __init__(self, in_channels: int, out_channels: int, init_variance: float, variance_eps: float):
        super().__init__()
        self.mean = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 1, bias=False), nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 1, bias=False),
        )
        self.variance_eps = variance_eps
        alpha = math.log(math.expm1(init_variance - variance_eps))  # softplus(alpha) + eps = init_variance
        self.alpha = nn.Parameter(torch.full((out_channels,), alpha))

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        student, teacher = align_spatial(student, teacher)
        variance = F.softplus(self.alpha) + self.variance_eps
        return gaussian_nll(self.mean(student), teacher, variance)


@register_loss("vid")
class VID(DistillLoss):
    """Maximise a variational lower bound on the mutual information between paired stages.

    Each pair gets a Gaussian head (mean from the student stage, one learned variance per teacher
    channel), as the authors' code in RepDistiller ``distiller_zoo/VID.py``: hidden width = teacher
    channels, ``init_variance=5`` and ``variance_eps=1e-5``. ``stages`` defaults to
    ``[-3, -2, -1]``, RepDistiller's ``feat[1:-1]`` for a CIFAR ResNet. The head maps student to
    teacher channels; maps of different resolution are pooled to the smaller one.

    Reference implementation: HobbitLong/RepDistiller, distiller_zoo/VID.py (VIDLoss, the authors'
    code from ssahn0215/variational-information-distillation).
    Deviations: none.
    """

    needs = frozenset({Need.FEATURES})
    description = "variational information distillation with Gaussian heads (Ahn et al. 2019)"

    def __init__(self, ctx: LossContext, *, stages: list[int], init_variance: float, variance_eps: float):
        super().__init__(ctx)
        self.pairs = stage_pairs(ctx, stages)
        variance_eps = positive("vid: variance_eps", variance_eps)
        if not positive("vid: init_variance", init_variance) > variance_eps:
            raise ConfigError(f"vid: init_variance must exceed variance_eps ({variance_eps}), got {init_variance}")
        self.heads = nn.ModuleList(
            VariationalHead(ctx.student.features[s][0], ctx.teacher.features[t][0], init_variance, variance_eps)
            for s, t in self.pairs
        )

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> Tensor:
        return sum(
            head(student.features[s], teacher.features[t]) for head, (s, t) in zip(self.heads, self.pairs)
        )
