"""MobileNetV2 for CIFAR (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
CVPR 2018), in the half-width form of the CRD benchmark (RepDistiller's ``mobile_half``).

The ImageNet body (Table 2 of the paper: a stride-2 3x3 stem, seven groups of inverted residual
blocks with expansion 6, a 1x1 convolution to 1280 channels) at width multiplier 0.5 — channels are
``int(c * 0.5)`` without rounding to multiples of 8, and the 1280-channel head is not scaled. As in
RepDistiller, the first group (expansion 1) keeps its 1x1 expansion convolution, and at 32x32 the
network keeps all of ImageNet's strides, ending at 2x2.

Stages follow RepDistiller's feature taps: groups 1-2 (12 channels, 16x16), group 3 (16, 8x8),
groups 4-5 (48, 4x4) and groups 6-7 (160, 2x2). Intermediates: the stem (conv-BN-ReLU) and each
stage's output, which is a *linear* bottleneck (the block ends in BN without activation, by design).
The 1x1 head convolution (``conv_head``, 1280 channels, BN-ReLU) follows the last stage, so
``num_features`` (1280) differs from the last tap's width (160). No ReLU follows a stage, so each stage
output is its own pre-activation tap (``forward_preact_intermediates``), made by the last block's
projection BatchNorm (``preact_norms``, mdistiller's ``get_bn_before_relu``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from timm.models import generate_default_cfgs

from bench.models.zoo._base import CifarNet, Stage, build_cifar_model, cifar_cfg, conv_bn, register_model

__all__ = ['MobileNetV2Cifar', 'InvertedResidual']

# (expansion t, channels c, blocks n, first stride s) per group, grouped into the feature stages
MOBILENETV2_ARCH = (
    ((1, 16, 1, 1), (6, 24, 2, 1)),
    ((6, 32, 3, 2),),
    ((6, 64, 4, 2), (6, 96, 3, 1)),
    ((6, 160, 3, 2), (6, 320, 1, 1)),
)


class InvertedResidual(nn.Module):
    """1x1 expansion (BN-ReLU), 3x3 depthwise (BN-ReLU), 1x1 linear projection (BN); residual
    connection when the block keeps shape."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        mid_chs = in_chs * expand_ratio
        self.conv_pw = conv_bn(in_chs, mid_chs, 1)
        self.conv_dw = conv_bn(mid_chs, mid_chs, 3, stride, groups=mid_chs)
        self.conv_pwl = conv_bn(mid_chs, out_chs, 1, act=False)
        self.has_skip = stride == 1 and in_chs == out_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_pwl(self.conv_dw(self.conv_pw(x)))
        return x + out if self.has_skip else out


class MobileNetV2Cifar(CifarNet):
    """MobileNetV2 for 32x32 inputs.

    Args:
        arch: Per feature stage, the (expansion, channels, blocks, first stride) of its groups.
        width_mult: Multiplier of the stem and block channels (``int(c * width_mult)``).
        stem_chs: Stem channels before the multiplier.
        head_chs: Channels of the 1x1 head convolution; scaled only when ``width_mult > 1``.
        num_classes, in_chans, drop_rate, global_pool: As in :class:`CifarNet`.
    """

    def __init__(
            self,
            arch: tuple[tuple[tuple[int, int, int, int], ...], ...] = MOBILENETV2_ARCH,
            width_mult: float = 1.0,
            stem_chs: int = 32,
            head_chs: int = 1280,
            num_classes: int = 100,
            in_chans: int = 3,
            drop_rate: float = 0.0,
            global_pool: str = 'avg',
    ) -> None:
        super().__init__(in_chans, drop_rate)
        in_chs = stem_out = int(stem_chs * width_mult)
        stem = conv_bn(in_chans, stem_out, 3, stride=2)
        stages = []
        for groups in arch:
            blocks, stage_stride = [], 1
            for expand_ratio, chs, n, stride in groups:
                out_chs = int(chs * width_mult)
                for j in range(n):
                    blocks.append(InvertedResidual(in_chs, out_chs, stride if j == 0 else 1, expand_ratio))
                    in_chs = out_chs
                stage_stride *= stride
            stages.append(Stage(nn.Sequential(*blocks), in_chs, stage_stride))
        head_chs = int(head_chs * width_mult) if width_mult > 1.0 else head_chs
        self.assemble(stem, stem_out, stages, num_classes, global_pool, stem_reduction=2,
                      head=(conv_bn(in_chs, head_chs, 1), head_chs))
        self.init_weights(linear_std=0.01)

    def stage_preact(self, i: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.stages[i](x)
        return out, out

    def preact_norms(self) -> list[nn.BatchNorm2d]:
        return [blocks[-1].conv_pwl[1] for blocks in self.stages]


def _create(variant: str, pretrained: bool = False, **kwargs: Any) -> MobileNetV2Cifar:
    num_taps = len(kwargs.get('arch', MOBILENETV2_ARCH)) + 1
    return build_cifar_model(MobileNetV2Cifar, variant, pretrained, num_taps, **kwargs)


default_cfgs = generate_default_cfgs({
    'mobilenetv2_cifar': cifar_cfg(pool_size=(2, 2)),
})


@register_model
def mobilenetv2_cifar(pretrained: bool = False, **kwargs: Any) -> MobileNetV2Cifar:
    """MobileNetV2, width 0.5, expansion 6 (RepDistiller's ``mobile_half``, the CRD table's "MobileNetV2")."""
    model_args = dict(arch=MOBILENETV2_ARCH, width_mult=0.5)
    return _create('mobilenetv2_cifar', pretrained, **dict(model_args, **kwargs))
