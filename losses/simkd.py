"""Chen, Mei, Wang, Feng & Chen, "Knowledge Distillation with the Reused Teacher Classifier" (CVPR 2022)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, Preparation, register_loss
from losses.checks import count
from losses.teacher_head import copy_teacher_classifier, hold_teacher_classifier, teacher_classifier
from registry import ConfigError


def projector(s_channels: int, t_channels: int, factor: int) -> nn.Sequential:
    """The authors' bottleneck: 1x1 conv -> BN -> ReLU -> 3x3 conv -> BN -> ReLU -> 1x1 conv -> BN -> ReLU,
    through ``t_channels // factor`` channels, no conv bias, PyTorch's default initialisation."""
    mid = t_channels // factor
    return nn.Sequential(
        nn.Conv2d(s_channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
        nn.Conv2d(mid, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
        nn.Conv2d(mid, t_channels, 1, bias=False), nn.BatchNorm2d(t_channels), nn.ReLU(inplace=True),
    )


@register_loss("simkd")
class SimKD(DistillLoss):
    """The student's last stage, projected to the teacher's width, matched to the teacher's last stage
    by MSE; the teacher's classifier, frozen, becomes the student's.

    The larger of the two maps is average-pooled to the smaller one's size before the projector (the
    student's) or as the target (the teacher's). The teacher's classifier is copied in ``prepare`` into
    buffers this loss owns (in its state dict and checkpoints, outside the optimizer); it needs a
    teacher whose classifier is one linear layer on its last stage's pooled features. At evaluation
    the student's logits are projector -> global average pool -> the teacher's classifier
    (``evaluation_logits``), so the top-1 of a simkd row is the student's accuracy through the
    teacher's classifier, as the authors report it; the student's own classifier is never trained.
    Defaults: factor 2, MSE weight 1, CE 0, no KD (``train_student.py -f 2``, ``scripts/run_distill.sh``
    ``-c 0 -d 0 -b 1`` on CIFAR-100 and ImageNet).

    Reference implementation: DefangChen/SimKD, models/util.py (``SimKD``), helper/loops.py (``train_distill``,
    ``validate_distill``), train_student.py, scripts/run_distill.sh
    Deviations: none. A WRN teacher's last stage is its residual stream before the final BN-ReLU, as in
    the RepDistiller WRN whose ``feat[-2]`` SimKD's code reads (SimKD's repository has no WRN).
    """

    needs = frozenset({Need.FEATURES})
    evaluation_needs = frozenset({Need.FEATURES})
    description = "student features projected onto the teacher's reused classifier (Chen et al. 2022)"

    def __init__(self, ctx: LossContext, *, factor: int):
        super().__init__(ctx)
        self.factor = count("simkd: factor", factor, 1)
        (s_channels, *_), (t_channels, *self.t_size) = ctx.student.features[-1], ctx.teacher.features[-1]
        if ctx.teacher.embedding != t_channels:
            raise ConfigError(f"simkd reuses the teacher's classifier on its last stage's pooled features; the "
                              f"teacher '{ctx.teacher.model or 'model'}' pools {ctx.teacher.embedding} features but "
                              f"its last stage has {t_channels} channels")
        if self.factor > t_channels:
            raise ConfigError(f"simkd: factor must be at most the teacher's {t_channels} channels, got {factor}")
        self.projector = projector(s_channels, t_channels, self.factor)
        hold_teacher_classifier(self, ctx.teacher.num_classes, t_channels)

    def prepare(self, prep: Preparation) -> None:
        copy_teacher_classifier(self, "simkd", prep.teacher)

    def project(self, features: Tensor) -> Tensor:
        """The student's last stage, pooled to the teacher's map where it is larger, through the projector."""
        if features.shape[-2] > self.t_size[0]:
            features = F.adaptive_avg_pool2d(features, self.t_size)
        return self.projector(features)

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> Tensor:
        projected = self.project(student.features[-1])
        target = teacher.features[-1]
        if target.shape[-2] > projected.shape[-2]:
            target = F.adaptive_avg_pool2d(target, projected.shape[-2:])
        return F.mse_loss(projected.float(), target.float())

    def evaluation_logits(self, student: Outputs) -> Tensor:
        pooled = self.project(student.features[-1]).mean(dim=(2, 3))
        return teacher_classifier(self, pooled)
