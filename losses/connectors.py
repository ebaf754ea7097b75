"""Trainable adapters that let a student's features be compared with a teacher's.

Built from probed shapes, so cross-architecture pairs (different channels or resolutions) work
for every feature loss without per-pair code.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from registry import ConfigError


def conv_connector(in_channels: int, out_channels: int) -> nn.Module:
    """1x1 conv + BN mapping student channels to teacher channels, for maps already of one size."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
        nn.BatchNorm2d(out_channels),
    )


def conv_regressor(student: tuple[int, int, int], teacher: tuple[int, int, int], *, relu: bool = True) -> nn.Module:
    """RepDistiller's ``ConvReg`` (``models/util.py``): conv -> BN -> ReLU from a (C, H, W) stage to another.

    The conv also matches the resolution, chosen by height as the authors do: a student twice
    the teacher's height gets a 3x3 stride-2 conv (padding 1), half of it a 4x4 stride-2
    transposed conv (padding 1), otherwise an unpadded conv of kernel (1 + s_H - t_H, 1 + s_W - t_W)
    (1x1 for equal sizes). The conv keeps its bias. A student smaller than the teacher by other
    than half, which ConvReg refuses, gets the unpadded transposed conv of kernel
    (1 + t_H - s_H, 1 + t_W - s_W), so any pair of stages runs. ``relu=False`` drops the ReLU, as the authors'
    AB ``Connector`` does. FitNet's regressor and WKD-F's projector use the default.
    """
    (s_c, s_h, s_w), (t_c, t_h, t_w) = student, teacher
    if s_h == 2 * t_h:
        conv: nn.Module = nn.Conv2d(s_c, t_c, kernel_size=3, stride=2, padding=1)
    elif 2 * s_h == t_h:
        conv = nn.ConvTranspose2d(s_c, t_c, kernel_size=4, stride=2, padding=1)
    elif s_h >= t_h and s_w >= t_w:
        conv = nn.Conv2d(s_c, t_c, kernel_size=(1 + s_h - t_h, 1 + s_w - t_w))
    elif s_h <= t_h and s_w <= t_w:  # RepDistiller raises here; the transposed mirror of the case above
        conv = nn.ConvTranspose2d(s_c, t_c, kernel_size=(1 + t_h - s_h, 1 + t_w - s_w))
    else:
        raise ConfigError(f"a conv regressor cannot map a student map of {s_h}x{s_w} to the teacher's {t_h}x{t_w}: "
                          "one is taller, the other wider; choose other stages")
    layers = [conv, nn.BatchNorm2d(t_c)] + ([nn.ReLU()] if relu else [])
    return nn.Sequential(*layers)


def align_spatial(student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
    """Pool the larger of two NCHW maps to the smaller one's height and width."""
    s_hw, t_hw = student.shape[-2:], teacher.shape[-2:]
    if s_hw == t_hw:
        return student, teacher
    target = (min(s_hw[0], t_hw[0]), min(s_hw[1], t_hw[1]))
    return F.adaptive_avg_pool2d(student, target), F.adaptive_avg_pool2d(teacher, target)
