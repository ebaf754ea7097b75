"""CIFAR ResNets: the 6n+2 networks of He et al. (2016, section 4.2) and the CIFAR ResNet-50.

ResNet-8 … ResNet-110 are the three-stage CIFAR networks: a 3x3 convolution with 16 channels, then
three stages of n basic blocks with 16, 32 and 64 channels at 32x32, 16x16 and 8x8, global average
pooling and a linear classifier. ``resnet8x4`` and ``resnet32x4`` are the 4x-wide variants (32 stem
channels, stages of 64, 128 and 256) used as a teacher/student pair in the CRD benchmark
(Tian et al., "Contrastive Representation Distillation", ICLR 2020). Shortcuts that change shape are
1x1 convolution + BatchNorm projections (option B of the paper), as in RepDistiller.

``resnet50_cifar`` is the ImageNet ResNet-50 body (bottleneck blocks 3-4-6-3, widths 64-128-256-512,
expansion 4) behind a CIFAR stem: one 3x3 stride-1 convolution and no max-pool, so its four stages
run at 32, 16, 8 and 4 pixels.

Intermediates (``forward_intermediates``, ``feature_info``): the stem (conv-BN-ReLU) and the output of
each stage, i.e. of its last block *after* the final ReLU. ``forward_preact_intermediates`` also gives
the sum before that ReLU (mdistiller's ``preact_feats``); ``preact_norms`` names the last block's final
BatchNorm for each (mdistiller's ``get_bn_before_relu``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from timm.models import generate_default_cfgs

from bench.models.zoo._base import CifarNet, Stage, build_cifar_model, cifar_cfg, conv_bn, last_block_preact, register_model

__all__ = ['CifarResNet', 'BasicBlock', 'Bottleneck']


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection, ReLU after the sum."""

    expansion = 1

    def __init__(self, in_chs: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_chs = planes * self.expansion
        self.conv1 = conv_bn(in_chs, planes, 3, stride)
        self.conv2 = conv_bn(planes, out_chs, 3, act=False)
        self.shortcut = conv_bn(in_chs, out_chs, 1, stride, act=False) if stride != 1 or in_chs != out_chs else None
        self.act = nn.ReLU(inplace=True)

    @property
    def out_norm(self) -> nn.BatchNorm2d:
        return self.conv2[1]

    def preact(self, x: torch.Tensor) -> torch.Tensor:
        """The residual sum, before the final ReLU."""
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return self.conv2(self.conv1(x)) + shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.preact(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4, residual connection, ReLU after the sum."""

    expansion = 4

    def __init__(self, in_chs: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_chs = planes * self.expansion
        self.conv1 = conv_bn(in_chs, planes, 1)
        self.conv2 = conv_bn(planes, planes, 3, stride)
        self.conv3 = conv_bn(planes, out_chs, 1, act=False)
        self.shortcut = conv_bn(in_chs, out_chs, 1, stride, act=False) if stride != 1 or in_chs != out_chs else None
        self.act = nn.ReLU(inplace=True)

    @property
    def out_norm(self) -> nn.BatchNorm2d:
        return self.conv3[1]

    def preact(self, x: torch.Tensor) -> torch.Tensor:
        """The residual sum, before the final ReLU."""
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return self.conv3(self.conv2(self.conv1(x))) + shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.preact(x))


class CifarResNet(CifarNet):
    """ResNet for 32x32 inputs: 3x3 stem without pooling, stages of residual blocks, the first at
    stride 1 and every later one at stride 2.

    Args:
        layers: Blocks per stage.
        channels: Block width (``planes``) per stage; a stage outputs ``planes * block.expansion``.
        block: ``BasicBlock`` or ``Bottleneck``.
        stem_width: Output channels of the stem convolution.
        num_classes, in_chans, drop_rate, global_pool: As in :class:`CifarNet`.
    """

    def __init__(
            self,
            layers: tuple[int, ...],
            channels: tuple[int, ...],
            block: type[BasicBlock] | type[Bottleneck] = BasicBlock,
            stem_width: int = 16,
            num_classes: int = 100,
            in_chans: int = 3,
            drop_rate: float = 0.0,
            global_pool: str = 'avg',
    ) -> None:
        super().__init__(in_chans, drop_rate)
        stem = conv_bn(in_chans, stem_width, 3)
        stages, in_chs = [], stem_width
        for i, (depth, planes) in enumerate(zip(layers, channels)):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(depth):
                blocks.append(block(in_chs, planes, stride if j == 0 else 1))
                in_chs = planes * block.expansion
            stages.append(Stage(nn.Sequential(*blocks), in_chs, stride))
        self.assemble(stem, stem_width, stages, num_classes, global_pool)
        self.init_weights()

    def stage_preact(self, i: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return last_block_preact(self.stages[i], x)

    def preact_norms(self) -> list[nn.BatchNorm2d]:
        return [blocks[-1].out_norm for blocks in self.stages]


def _create(variant: str, pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    return build_cifar_model(CifarResNet, variant, pretrained, len(kwargs['layers']) + 1, **kwargs)


default_cfgs = generate_default_cfgs({
    'resnet8': cifar_cfg(),
    'resnet14': cifar_cfg(),
    'resnet20': cifar_cfg(),
    'resnet32': cifar_cfg(),
    'resnet44': cifar_cfg(),
    'resnet56': cifar_cfg(),
    'resnet110': cifar_cfg(),
    'resnet8x4': cifar_cfg(),
    'resnet32x4': cifar_cfg(),
    'resnet50_cifar': cifar_cfg(pool_size=(4, 4)),
})


@register_model
def resnet8(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-8 for CIFAR (n=1)."""
    model_args = dict(layers=(1, 1, 1), channels=(16, 32, 64))
    return _create('resnet8', pretrained, **dict(model_args, **kwargs))


@register_model
def resnet14(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-14 for CIFAR (n=2)."""
    model_args = dict(layers=(2, 2, 2), channels=(16, 32, 64))
    return _create('resnet14', pretrained, **dict(model_args, **kwargs))


@register_model
def resnet20(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-20 for CIFAR (n=3)."""
    model_args = dict(layers=(3, 3, 3), channels=(16, 32, 64))
    return _create('resnet20', pretrained, **dict(model_args, **kwargs))


@register_model
def resnet32(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-32 for CIFAR (n=5)."""
    model_args = dict(layers=(5, 5, 5), channels=(16, 32, 64))
    return _create('resnet32', pretrained, **dict(model_args, **kwargs))


@register_model
def resnet44(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-44 for CIFAR (n=7)."""
    model_args = dict(layers=(7, 7, 7), channels=(16, 32, 64))
    return _create('resnet44', pretrained, **dict(model_args, **kwargs))


@register_model
def resnet56(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-56 for CIFAR (n=9)."""
    model_args = dict(layers=(9, 9, 9), channels=(16, 32, 64))
    return _create('resnet56', pretrained, **dict(model_args, **kwargs))


@register_model
def resnet110(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-110 for CIFAR (n=18)."""
    model_args = dict(layers=(18, 18, 18), channels=(16, 32, 64))
    return _create('resnet110', pretrained, **dict(model_args, **kwargs))


@register_model
def resnet8x4(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-8 for CIFAR, 4x wide (stem 32, stages 64-128-256)."""
    model_args = dict(layers=(1, 1, 1), channels=(64, 128, 256), stem_width=32)
    return _create('resnet8x4', pretrained, **dict(model_args, **kwargs))


@register_model
def resnet32x4(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-32 for CIFAR, 4x wide (stem 32, stages 64-128-256)."""
    model_args = dict(layers=(5, 5, 5), channels=(64, 128, 256), stem_width=32)
    return _create('resnet32x4', pretrained, **dict(model_args, **kwargs))


@register_model
def resnet50_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-50 (bottleneck 3-4-6-3) with a 3x3 stride-1 stem and no max-pool, for 32x32 inputs."""
    model_args = dict(layers=(3, 4, 6, 3), channels=(64, 128, 256, 512), block=Bottleneck, stem_width=64)
    return _create('resnet50_cifar', pretrained, **dict(model_args, **kwargs))
