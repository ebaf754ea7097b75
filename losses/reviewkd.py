"""Chen, Liu, Zhao & Jia, "Distilling Knowledge via Knowledge Review" (CVPR 2021)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, register_loss, stage_index
from losses.numerics import fp32
from losses.warmup import warmup_factor, warmup_fraction
from registry import ConfigError


class ABF(nn.Module):
    """Attention-based fusion: 1x1 conv -> BN, fused with the deeper level's output by a two-map
    attention (1x1 conv with bias -> sigmoid), resized to the teacher's map, then 3x3 conv -> BN.

    The deepest level has nothing to fuse with (``fuse=False``). Both convolutions start from
    ``kaiming_uniform_(a=1)`` as in the authors' code.
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, fuse: bool):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, mid_channels, 1, bias=False), nn.BatchNorm2d(mid_channels))
        self.conv2 = nn.Sequential(nn.Conv2d(mid_channels, out_channels, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(out_channels))
        self.att_conv = nn.Sequential(nn.Conv2d(2 * mid_channels, 2, 1), nn.Sigmoid()) if fuse else None
        nn.init.kaiming_uniform_(self.conv1[0].weight, a=1)
        nn.init.kaiming_uniform_(self.conv2[0].weight, a=1)

    def forward(self, x: Tensor, deeper: Tensor | None, out_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """(output for the loss, fused features handed to the next shallower level)."""
        x = self.conv1(x)
        if self.att_conv is not None:
            deeper = F.interpolate(deeper, x.shape[-2:], mode="nearest")
            attention = self.att_conv(torch.cat([x, deeper], dim=1))
            x = x * attention[:, :1] + deeper * attention[:, 1:]
        if x.shape[-2:] != out_size:
            x = F.interpolate(x, out_size, mode="nearest")
        return self.conv2(x), x


@fp32
def hierarchical_context_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """MSE of the maps plus, for each of 4x4, 2x2, 1x1 smaller than the map, the MSE of their
    average pools at weights 1/2, 1/4, 1/8; the sum divided by the sum of its weights."""
    loss, weight, total = F.mse_loss(student, teacher), 1.0, 1.0
    for size in (4, 2, 1):
        if size >= student.shape[-2]:
            continue
        weight /= 2
        loss = loss + weight * F.mse_loss(F.adaptive_avg_pool2d(student, size), F.adaptive_avg_pool2d(teacher, size))
        total += weight
    return loss / total


@register_loss("reviewkd")
class ReviewKD(DistillLoss):
    """Knowledge review: the student's ``stages`` and pooled embedding, fused deep to shallow by ABF
    modules, each matched to the teacher's same level by the hierarchical context loss.

    Levels are ``stages`` (shallow to deep) plus the pooled embedding as a 1x1 map; the ABF width is
    ``min(512, student embedding)``. The loss ramps in as the authors' ``min(1, epoch / 20)`` with
    epochs counted from 0 (dvlab-research/ReviewKD CIFAR-100/train.py, ``--kd-warm-up 20``), so the
    first epoch has weight 0; ``warmup`` is a fraction of the run (``losses.warmup``: 20 of 240
    epochs). Defaults: the three CIFAR stages after the stem, weight 5, CE 1 (mdistiller configs/
    cifar100/reviewkd.yaml and engine/cfg.py CFG.REVIEWKD; the authors' script/reviewKD.sh, per pair
    in pairs.toml).

    Reference implementation: megvii-research/mdistiller, mdistiller/distillers/ReviewKD.py (the modules and
    the loss); dvlab-research/ReviewKD, CIFAR-100/train.py (the warm-up)
    Deviations: the teacher's stage features are the post-activation stage outputs the harness
    provides; the authors and mdistiller read the teacher's pre-activation outputs (``preact=True``,
    ``preact_feats``), and on ImageNet mdistiller the student's too (``STU_PREACT``). The pooled level
    is the same either way. mdistiller's port ramps one epoch ahead of the authors, ``min(epoch / 20, 1)``
    with epochs from 1; the authors' ramp, which made the published numbers, is the default.
    """

    needs = frozenset({Need.FEATURES, Need.EMBEDDING})
    description = "knowledge review: ABF fusion across stages, hierarchical context loss (Chen et al. 2021)"

    def __init__(self, ctx: LossContext, *, stages: list[int], warmup: float):
        super().__init__(ctx)
        if not stages:
            raise ConfigError("reviewkd: stages must list at least one stage, e.g. [-3, -2, -1]")
        self.s_stages = [stage_index(ctx.student, s) for s in stages]
        self.t_stages = [stage_index(ctx.teacher, s) for s in stages]
        if any(a >= b for a, b in zip(self.s_stages, self.s_stages[1:])):
            raise ConfigError(f"reviewkd: stages must be distinct and run shallow to deep, got {stages}")
        self.warmup = warmup_fraction("reviewkd", warmup)
        in_channels = [ctx.student.features[i][0] for i in self.s_stages] + [ctx.student.embedding]
        out_channels = [ctx.teacher.features[i][0] for i in self.t_stages] + [ctx.teacher.embedding]
        self.out_sizes = [ctx.teacher.features[i][1:] for i in self.t_stages] + [(1, 1)]
        mid = min(512, ctx.student.embedding)
        last = len(in_channels) - 1
        self.abfs = nn.ModuleList(ABF(c_in, mid, c_out, fuse=i < last)
                                  for i, (c_in, c_out) in enumerate(zip(in_channels, out_channels)))

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> Tensor:
        levels = [student.features[i] for i in self.s_stages] + [student.embedding[:, :, None, None]]
        targets = [teacher.features[i] for i in self.t_stages] + [teacher.embedding[:, :, None, None]]
        loss, deeper = 0.0, None
        for level in reversed(range(len(levels))):
            out, deeper = self.abfs[level](levels[level], deeper, tuple(self.out_sizes[level]))
            loss = loss + hierarchical_context_loss(out, targets[level])
        return warmup_factor(batch, self.warmup, first=0) * loss
