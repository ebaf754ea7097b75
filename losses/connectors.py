"""Trainable adapters that let a student's features be compared with a teacher's.

Built from probed shapes, so cross-architecture pairs (different channels or resolutions) work
for every feature loss without per-pair code.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def conv_connector(in_channels: int, out_channels: int) -> nn.Module:
    """1x1 conv + BN mapping student channels to teacher channels (FitNet/CRD-style regressor)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
        nn.BatchNorm2d(out_channels),
    )


def align_spatial(student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
    """Pool the larger of two NCHW maps to the smaller one's height and width."""
    s_hw, t_hw = student.shape[-2:], teacher.shape[-2:]
    if s_hw == t_hw:
        return student, teacher
    target = (min(s_hw[0], t_hw[0]), min(s_hw[1], t_hw[1]))
    return F.adaptive_avg_pool2d(student, target), F.adaptive_avg_pool2d(teacher, target)
