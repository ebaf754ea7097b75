"""ShuffleNet V1 and V2 for CIFAR, as in the CRD benchmark.

* ShuffleNetV1 (Zhang et al., CVPR 2018), g = 3: three stages of 4, 8 and 4 units with 240, 480 and
  960 channels. A unit is a grouped 1x1 convolution (BN-ReLU), a channel shuffle, a 3x3 depthwise
  convolution (BN-ReLU), a grouped 1x1 convolution (BN), then the shortcut — added, or for the first
  unit of a stage (stride 2) a 3x3 average pool concatenated — and ReLU. The very first unit uses an
  ungrouped first convolution (the paper's rule for the 24-channel input). The ReLU after the
  depthwise convolution follows the CIFAR implementation the CRD numbers were trained with (the
  paper has none there).
* ShuffleNetV2 1x (Ma et al., ECCV 2018): three stages of one stride-2 down-sampling unit and 3, 7, 3
  basic units with 116, 232 and 464 channels, then a 1x1 convolution to 1024 channels (BN-ReLU).

For 32x32 inputs both replace ImageNet's stride-2 3x3 convolution + max-pool stem by a stride-1 1x1
convolution to 24 channels (BN-ReLU), so the stages run at 16, 8 and 4 pixels. The CIFAR
implementation initialises both with PyTorch's default initialisation; so do these.

Intermediates: the stem and each stage's output — after the final ReLU for V1, after the channel
shuffle (both halves activated) for V2. V2's ``conv_head`` follows the last stage, so its
``num_features`` (1024) differs from the last tap's width (464). ``forward_preact_intermediates`` also
gives each stage's output before its final ReLU (V1: the sum or concatenation; V2: the last unit's
branch before its ReLU, beside the untouched half, shuffled like the output); no single BatchNorm makes
them, so ``preact_norms`` is ``None`` (mdistiller rejects ShuffleNet as an OFD teacher).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from timm.models import generate_default_cfgs

from bench.models.zoo._base import CifarNet, Stage, build_cifar_model, cifar_cfg, conv_bn, last_block_preact, register_model

__all__ = ['ShuffleNetV1Cifar', 'ShuffleNetV2Cifar']


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` groups: (N, g*c, H, W) -> view (N, g, c) -> (N, c, g)."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleV1Unit(nn.Module):
    """ShuffleNetV1 unit; with stride 2 the residual branch makes ``out_chs - in_chs`` channels and
    the average-pooled input is concatenated to it."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, groups: int, first_groups: int) -> None:
        super().__init__()
        self.stride = stride
        self.first_groups = first_groups
        branch_chs = out_chs - in_chs if stride == 2 else out_chs
        mid_chs = branch_chs // 4
        self.conv1 = conv_bn(in_chs, mid_chs, 1, groups=first_groups)
        self.conv2 = conv_bn(mid_chs, mid_chs, 3, stride, groups=mid_chs)
        self.conv3 = conv_bn(mid_chs, branch_chs, 1, groups=groups, act=False)
        self.pool = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else None
        self.act = nn.ReLU(inplace=True)

    def preact(self, x: torch.Tensor) -> torch.Tensor:
        """The sum (or concatenation), before the final ReLU."""
        out = channel_shuffle(self.conv1(x), self.first_groups)
        out = self.conv3(self.conv2(out))
        return torch.cat([out, self.pool(x)], 1) if self.pool is not None else out + x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.preact(x))


class ShuffleNetV1Cifar(CifarNet):
    """ShuffleNetV1 for 32x32 inputs.

    Args:
        stage_chs: Output channels per stage.
        stage_units: Units per stage (the first one strided).
        groups: Groups of the 1x1 convolutions.
        stem_chs: Stem channels.
        num_classes, in_chans, drop_rate, global_pool: As in :class:`CifarNet`.
    """

    def __init__(
            self,
            stage_chs: tuple[int, ...] = (240, 480, 960),
            stage_units: tuple[int, ...] = (4, 8, 4),
            groups: int = 3,
            stem_chs: int = 24,
            num_classes: int = 100,
            in_chans: int = 3,
            drop_rate: float = 0.0,
            global_pool: str = 'avg',
    ) -> None:
        super().__init__(in_chans, drop_rate)
        stem = conv_bn(in_chans, stem_chs, 1)
        stages, in_chs = [], stem_chs
        for i, (out_chs, units) in enumerate(zip(stage_chs, stage_units)):
            blocks = []
            for j in range(units):
                first_groups = 1 if i == 0 and j == 0 else groups
                blocks.append(ShuffleV1Unit(in_chs, out_chs, 2 if j == 0 else 1, groups, first_groups))
                in_chs = out_chs
            stages.append(Stage(nn.Sequential(*blocks), out_chs, 2))
        self.assemble(stem, stem_chs, stages, num_classes, global_pool)

    def stage_preact(self, i: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return last_block_preact(self.stages[i], x)


class ShuffleV2DownUnit(nn.Module):
    """ShuffleNetV2 stride-2 unit: two branches of ``out_chs // 2`` channels each, concatenated, shuffled."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        mid_chs = out_chs // 2
        self.branch1 = nn.Sequential(
            conv_bn(in_chs, in_chs, 3, 2, groups=in_chs, act=False),
            conv_bn(in_chs, mid_chs, 1),
        )
        self.branch2 = nn.Sequential(
            conv_bn(in_chs, mid_chs, 1),
            conv_bn(mid_chs, mid_chs, 3, 2, groups=mid_chs, act=False),
            conv_bn(mid_chs, mid_chs, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(torch.cat([self.branch1(x), self.branch2(x)], 1), 2)


class ShuffleV2Unit(nn.Module):
    """ShuffleNetV2 basic unit: half the channels pass through, the other half goes through
    1x1 (BN-ReLU), 3x3 depthwise (BN), 1x1 (BN-ReLU); concatenated and shuffled."""

    def __init__(self, chs: int) -> None:
        super().__init__()
        half = chs // 2
        self.branch2 = nn.Sequential(
            conv_bn(half, half, 1),
            conv_bn(half, half, 3, groups=half, act=False),
            conv_bn(half, half, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat([x1, self.branch2(x2)], 1), 2)

    def preact(self, x: torch.Tensor) -> torch.Tensor:
        """The output with the branch taken before its final ReLU (the other half is already activated)."""
        x1, x2 = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat([x1, self.branch2[-1][:-1](self.branch2[:-1](x2))], 1), 2)


class ShuffleNetV2Cifar(CifarNet):
    """ShuffleNetV2 for 32x32 inputs.

    Args:
        stage_chs: Output channels per stage.
        stage_units: Basic units per stage, after its down-sampling unit.
        stem_chs: Stem channels.
        head_chs: Channels of the final 1x1 convolution.
        num_classes, in_chans, drop_rate, global_pool: As in :class:`CifarNet`.
    """

    def __init__(
            self,
            stage_chs: tuple[int, ...] = (116, 232, 464),
            stage_units: tuple[int, ...] = (3, 7, 3),
            stem_chs: int = 24,
            head_chs: int = 1024,
            num_classes: int = 100,
            in_chans: int = 3,
            drop_rate: float = 0.0,
            global_pool: str = 'avg',
    ) -> None:
        super().__init__(in_chans, drop_rate)
        stem = conv_bn(in_chans, stem_chs, 1)
        stages, in_chs = [], stem_chs
        for out_chs, units in zip(stage_chs, stage_units):
            blocks = [ShuffleV2DownUnit(in_chs, out_chs)] + [ShuffleV2Unit(out_chs) for _ in range(units)]
            stages.append(Stage(nn.Sequential(*blocks), out_chs, 2))
            in_chs = out_chs
        self.assemble(stem, stem_chs, stages, num_classes, global_pool, head=(conv_bn(in_chs, head_chs, 1), head_chs))

    def stage_preact(self, i: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return last_block_preact(self.stages[i], x)


def _create_v1(variant: str, pretrained: bool = False, **kwargs: Any) -> ShuffleNetV1Cifar:
    return build_cifar_model(ShuffleNetV1Cifar, variant, pretrained, len(kwargs['stage_chs']) + 1, **kwargs)


def _create_v2(variant: str, pretrained: bool = False, **kwargs: Any) -> ShuffleNetV2Cifar:
    return build_cifar_model(ShuffleNetV2Cifar, variant, pretrained, len(kwargs['stage_chs']) + 1, **kwargs)


default_cfgs = generate_default_cfgs({
    'shufflenetv1_cifar': cifar_cfg(pool_size=(4, 4)),
    'shufflenetv2_cifar': cifar_cfg(pool_size=(4, 4)),
})


@register_model
def shufflenetv1_cifar(pretrained: bool = False, **kwargs: Any) -> ShuffleNetV1Cifar:
    """ShuffleNetV1 1x, g=3 (240-480-960), CIFAR stem."""
    model_args = dict(stage_chs=(240, 480, 960), stage_units=(4, 8, 4), groups=3)
    return _create_v1('shufflenetv1_cifar', pretrained, **dict(model_args, **kwargs))


@register_model
def shufflenetv2_cifar(pretrained: bool = False, **kwargs: Any) -> ShuffleNetV2Cifar:
    """ShuffleNetV2 1x (116-232-464, head 1024), CIFAR stem."""
    model_args = dict(stage_chs=(116, 232, 464), stage_units=(3, 7, 3), head_chs=1024)
    return _create_v2('shufflenetv2_cifar', pretrained, **dict(model_args, **kwargs))
