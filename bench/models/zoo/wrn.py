"""Wide residual networks for CIFAR (Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016).

WRN-d-k: a 3x3 convolution with 16 channels, then three stages of n = (d - 4) / 6 pre-activation
basic blocks (BN-ReLU-conv3x3-BN-ReLU-conv3x3) with 16k, 32k and 64k channels at 32x32, 16x16 and
8x8, a final BN-ReLU, global average pooling and a linear classifier. Where a block changes width or
resolution, its shortcut is a 1x1 convolution of the block's activated input, as in the paper's
code and RepDistiller. Dropout inside the blocks is not used (RepDistiller trains with 0).

Intermediates: the stem convolution's output and each stage's output, i.e. the residual stream
*before* the next BN-ReLU — these networks have no activation at the end of a block, and these are
the features RepDistiller hands to feature losses. ``forward_intermediates(norm=True)`` applies the
final BN-ReLU (``norm``) to the last stage's output, which then equals ``forward_features``.
``forward_preact_intermediates`` also gives each stage's output through the BatchNorm that comes next
(the next stage's first block's ``bn1``, or the final ``norm``), before its ReLU — as mdistiller's
``preact_feats`` and ``get_bn_before_relu`` — computed without moving that BatchNorm's running
statistics a second time.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from timm.models import generate_default_cfgs

from bench.models.zoo._base import CifarNet, Stage, batch_norm_again, build_cifar_model, cifar_cfg, register_model

__all__ = ['WideResNet', 'PreActBlock']


class PreActBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus the shortcut."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.act1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.act2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, 1, padding=1, bias=False)
        projects = stride != 1 or in_chs != out_chs
        self.shortcut = nn.Conv2d(in_chs, out_chs, 1, stride, bias=False) if projects else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(x))
        # a projection reads the activated input; an identity shortcut carries the raw stream
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(self.act2(self.bn2(self.conv1(out))))
        return out + shortcut


class WideResNet(CifarNet):
    """Wide ResNet for 32x32 inputs.

    Args:
        depth: Total depth d, 6n + 4.
        widen_factor: Width multiplier k of the stages (16k, 32k, 64k channels).
        num_classes, in_chans, drop_rate, global_pool: As in :class:`CifarNet`.
    """

    def __init__(
            self,
            depth: int,
            widen_factor: int = 1,
            num_classes: int = 100,
            in_chans: int = 3,
            drop_rate: float = 0.0,
            global_pool: str = 'avg',
    ) -> None:
        super().__init__(in_chans, drop_rate)
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4 (16, 22, 28, 40, ...), got {depth}")
        n = (depth - 4) // 6
        stem = nn.Conv2d(in_chans, 16, 3, 1, padding=1, bias=False)
        stages, in_chs = [], 16
        for i, width in enumerate((16 * widen_factor, 32 * widen_factor, 64 * widen_factor)):
            stride = 1 if i == 0 else 2
            stages.append(Stage(nn.Sequential(*[
                PreActBlock(in_chs if j == 0 else width, width, stride if j == 0 else 1) for j in range(n)
            ]), width, stride))
            in_chs = width
        self.assemble(stem, 16, stages, num_classes, global_pool,
                      norm=nn.Sequential(nn.BatchNorm2d(in_chs), nn.ReLU(inplace=True)))
        self.init_weights()
        nn.init.zeros_(self.fc.bias)

    def stage_preact(self, i: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.stages[i](x)
        return batch_norm_again(self.preact_norms()[i], out), out

    def preact_norms(self) -> list[nn.BatchNorm2d]:
        return [stage[0].bn1 for stage in self.stages[1:]] + [self.norm[0]]


def _create(variant: str, pretrained: bool = False, **kwargs: Any) -> WideResNet:
    return build_cifar_model(WideResNet, variant, pretrained, 4, **kwargs)


default_cfgs = generate_default_cfgs({
    'wrn_16_1': cifar_cfg(first_conv='stem'),
    'wrn_16_2': cifar_cfg(first_conv='stem'),
    'wrn_40_1': cifar_cfg(first_conv='stem'),
    'wrn_40_2': cifar_cfg(first_conv='stem'),
})


@register_model
def wrn_16_1(pretrained: bool = False, **kwargs: Any) -> WideResNet:
    """WRN-16-1 (n=2, widths 16-32-64)."""
    model_args = dict(depth=16, widen_factor=1)
    return _create('wrn_16_1', pretrained, **dict(model_args, **kwargs))


@register_model
def wrn_16_2(pretrained: bool = False, **kwargs: Any) -> WideResNet:
    """WRN-16-2 (n=2, widths 32-64-128)."""
    model_args = dict(depth=16, widen_factor=2)
    return _create('wrn_16_2', pretrained, **dict(model_args, **kwargs))


@register_model
def wrn_40_1(pretrained: bool = False, **kwargs: Any) -> WideResNet:
    """WRN-40-1 (n=6, widths 16-32-64)."""
    model_args = dict(depth=40, widen_factor=1)
    return _create('wrn_40_1', pretrained, **dict(model_args, **kwargs))


@register_model
def wrn_40_2(pretrained: bool = False, **kwargs: Any) -> WideResNet:
    """WRN-40-2 (n=6, widths 32-64-128)."""
    model_args = dict(depth=40, widen_factor=2)
    return _create('wrn_40_2', pretrained, **dict(model_args, **kwargs))
