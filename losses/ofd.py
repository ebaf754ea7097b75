"""Heo, Kim, Yun, Park, Kwak & Choi, "A Comprehensive Overhaul of Feature Distillation" (ICCV 2019)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, Preparation, register_loss
from losses.numerics import fp32
from registry import ConfigError

# below this probability of a negative response the authors' margin falls back to -3 std
NEGATIVE_PROBABILITY_FLOOR = 1e-3


def bn_margin(weight: Tensor, bias: Tensor) -> Tensor:
    """Per channel, the expected value of a pre-ReLU response given that it is negative, for a
    response distributed N(bias, |weight|^2) as the BatchNorm before it makes it:
    ``m - s * pdf(m / s) / cdf(-m / s)``; ``-3 s`` where ``cdf(-m / s)`` is at most 1e-3."""
    s, m = weight.double().abs(), bias.double()
    negative = torch.special.ndtr(-m / s)
    pdf = torch.exp(-(m / s) ** 2 / 2) / math.sqrt(2 * math.pi)
    return torch.where(negative > NEGATIVE_PROBABILITY_FLOOR, m - s * pdf / negative, -3 * s).float()


@fp32
def partial_l2(student: Tensor, teacher: Tensor, margin: Tensor) -> Tensor:
    """Squared distance to ``max(teacher, margin)``, skipped where that target is not positive and the
    student is already below it; summed over elements, divided by the batch size."""
    target = torch.maximum(teacher, margin)
    kept = (student > target) | (target > 0)
    return ((student - target) ** 2 * kept).sum() / student.shape[0]


def connector(s_channels: int, t_channels: int) -> nn.Sequential:
    """1x1 conv (no bias) -> BN, the conv drawn from N(0, 2 / (k * k * out_channels))."""
    conv = nn.Conv2d(s_channels, t_channels, 1, bias=False)
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / (conv.kernel_size[0] * conv.kernel_size[1] * t_channels)))
    return nn.Sequential(conv, nn.BatchNorm2d(t_channels))


@register_loss("ofd")
class OFD(DistillLoss):
    """Pre-ReLU stage features of the student, through a connector, matched to the teacher's by a
    partial L2 that ignores the teacher's negative responses below a margin.

    The margin of each teacher channel is the expected value of its negative responses under the
    BatchNorm that makes them (``bn_margin``, read from the teacher's ``preact_norms`` in ``prepare``
    into a buffer this loss owns). Stages are the stages after the stem, the last ``min`` of both
    models aligned (mdistiller's ``_align_list``); a teacher map of another size is average-pooled to
    the student's. Stage i of n is weighted ``1 / 2 ** (n - i - 1)``; the sum is divided by the batch
    size; loss weight 1e-3, CE 1 (mdistiller CFG.OFD: FEAT_WEIGHT 0.001; clovaai's CIFAR script
    ``loss_distill.sum() / batch_size / 1000``). Both models must give pre-activation stage features
    (the CIFAR zoo: ResNet, WRN, VGG, MobileNetV2, ShuffleNet as student), and the teacher a BatchNorm
    before each (not ShuffleNet, as in mdistiller).

    Reference implementation: clovaai/overhaul-distillation, CIFAR-100/distiller.py and
    train_with_distillation.py; megvii-research/mdistiller, mdistiller/distillers/OFD.py
    Deviations: the teacher runs in eval mode (running BatchNorm statistics), as every loss's shared teacher
    here; both reference scripts put the teacher in train mode (batch statistics, drifting running
    statistics). MobileNetV2's stages end without a ReLU, so its stage outputs are its pre-activation
    features (mdistiller names their BatchNorms but returns no ``preact_feats`` for it). A WRN's
    pre-activation taps do not move that BatchNorm's running statistics a second time (mdistiller's WRN
    forward applies it twice per step).
    """

    needs = frozenset({Need.PREACT_FEATURES})
    description = "pre-ReLU features, teacher-BN margin, partial L2 (Heo et al. 2019)"

    def __init__(self, ctx: LossContext):
        super().__init__(ctx)
        for side, shapes in (("student", ctx.student), ("teacher", ctx.teacher)):
            if not shapes.preact_features:
                raise ConfigError(f"ofd needs pre-activation stage features of both models; the {side} "
                                  f"'{shapes.model or 'model'}' gives none (the CIFAR zoo's ResNet, WRN, VGG, "
                                  f"MobileNetV2 and ShuffleNet models do)")
        count = min(len(ctx.student.preact_features), len(ctx.teacher.preact_features))
        s_shapes, t_shapes = ctx.student.preact_features[-count:], ctx.teacher.preact_features[-count:]
        self.s_first, self.t_first = len(ctx.student.preact_features) - count, len(ctx.teacher.preact_features) - count
        self.t_channels = [c for c, _, _ in t_shapes]
        self.connectors = nn.ModuleList(connector(s[0], t[0]) for s, t in zip(s_shapes, t_shapes))
        self.register_buffer("margins", torch.zeros(sum(self.t_channels)))  # per teacher channel, stage after stage

    def prepare(self, prep: Preparation) -> None:
        norms = getattr(prep.teacher.body, "preact_norms", lambda: None)()
        if norms is None:
            raise ConfigError(f"ofd needs a teacher with a BatchNorm before each distilled feature (its margin); "
                              f"'{self.ctx.teacher.model or 'this teacher'}' has none there")
        norms = norms[self.t_first:]
        self.margins.copy_(torch.cat([bn_margin(bn.weight.detach(), bn.bias.detach()) for bn in norms]))

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> Tensor:
        margins = self.margins.split(self.t_channels)
        count = len(self.connectors)
        loss = 0.0
        for i, (conn, margin) in enumerate(zip(self.connectors, margins)):
            s = conn(student.preact_features[self.s_first + i])
            t = F.adaptive_avg_pool2d(teacher.preact_features[self.t_first + i], s.shape[-2:])
            loss = loss + partial_l2(s, t, margin.view(1, -1, 1, 1)) / 2 ** (count - i - 1)
        return loss
