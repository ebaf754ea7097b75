"""VGG with BatchNorm for CIFAR (Simonyan & Zisserman, ICLR 2015, configurations A/B/D/E, plus the
8-layer "S"), with the fully connected layers replaced by global average pooling and one linear
classifier, as in the CRD benchmark.

Five groups of 3x3 conv-BN-ReLU layers (64, 128, 256, 512 and 512 channels) with 2x2 max-pooling
between the first four; at 32x32 there is no pooling between the fourth and fifth group (the
original ImageNet network pools there), so the last two groups both run at 4x4. Convolutions carry
a bias, as in the original network.

Intermediates: the first group (``stem``, at full resolution) and each later group's output after
its last ReLU; groups 2-4 start with their max-pool. ``forward_preact_intermediates`` also gives each
later group's output before that ReLU, made by the group's last BatchNorm (``preact_norms``), as
mdistiller's ``preact_feats`` and ``get_bn_before_relu``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models import generate_default_cfgs

from bench.models.zoo._base import CifarNet, Stage, build_cifar_model, cifar_cfg, register_model

__all__ = ['CifarVGG']


def _conv_group(in_chs: int, widths: tuple[int, ...], pool: bool) -> nn.Sequential:
    """Optional 2x2 max-pool, then one 3x3 conv-BN-ReLU per entry of ``widths``."""
    layers: list[nn.Module] = [nn.MaxPool2d(kernel_size=2, stride=2)] if pool else []
    for width in widths:
        layers += [nn.Conv2d(in_chs, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        in_chs = width
    return nn.Sequential(*layers)


class CifarVGG(CifarNet):
    """VGG-BN for 32x32 inputs.

    Args:
        cfg: Widths of the convolutions of each of the five groups.
        num_classes, in_chans, drop_rate, global_pool: As in :class:`CifarNet`.
    """

    def __init__(
            self,
            cfg: tuple[tuple[int, ...], ...],
            num_classes: int = 100,
            in_chans: int = 3,
            drop_rate: float = 0.0,
            global_pool: str = 'avg',
    ) -> None:
        super().__init__(in_chans, drop_rate)
        stem = _conv_group(in_chans, cfg[0], pool=False)
        stages, in_chs = [], cfg[0][-1]
        for i, widths in enumerate(cfg[1:]):
            pool = i < len(cfg) - 2  # no pooling before the last group
            stages.append(Stage(_conv_group(in_chs, widths, pool), widths[-1], 2 if pool else 1))
            in_chs = widths[-1]
        self.assemble(stem, cfg[0][-1], stages, num_classes, global_pool)
        self.init_weights(linear_std=0.01)

    def stage_preact(self, i: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        preact = self.stages[i][:-1](x)  # every layer but the final ReLU
        return preact, F.relu(preact)

    def preact_norms(self) -> list[nn.BatchNorm2d]:
        return [group[-2] for group in self.stages]


def _create(variant: str, pretrained: bool = False, **kwargs: Any) -> CifarVGG:
    return build_cifar_model(CifarVGG, variant, pretrained, len(kwargs['cfg']), **kwargs)


default_cfgs = generate_default_cfgs({
    name: cifar_cfg(pool_size=(4, 4))
    for name in ('vgg8_cifar', 'vgg11_cifar', 'vgg13_cifar', 'vgg16_cifar', 'vgg19_cifar')
})


@register_model
def vgg8_cifar(pretrained: bool = False, **kwargs: Any) -> CifarVGG:
    """VGG-8-BN ("S": one convolution per group)."""
    model_args = dict(cfg=((64,), (128,), (256,), (512,), (512,)))
    return _create('vgg8_cifar', pretrained, **dict(model_args, **kwargs))


@register_model
def vgg11_cifar(pretrained: bool = False, **kwargs: Any) -> CifarVGG:
    """VGG-11-BN (configuration A)."""
    model_args = dict(cfg=((64,), (128,), (256, 256), (512, 512), (512, 512)))
    return _create('vgg11_cifar', pretrained, **dict(model_args, **kwargs))


@register_model
def vgg13_cifar(pretrained: bool = False, **kwargs: Any) -> CifarVGG:
    """VGG-13-BN (configuration B)."""
    model_args = dict(cfg=((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)))
    return _create('vgg13_cifar', pretrained, **dict(model_args, **kwargs))


@register_model
def vgg16_cifar(pretrained: bool = False, **kwargs: Any) -> CifarVGG:
    """VGG-16-BN (configuration D)."""
    model_args = dict(cfg=((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)))
    return _create('vgg16_cifar', pretrained, **dict(model_args, **kwargs))


@register_model
def vgg19_cifar(pretrained: bool = False, **kwargs: Any) -> CifarVGG:
    """VGG-19-BN (configuration E)."""
    model_args = dict(cfg=((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512)))
    return _create('vgg19_cifar', pretrained, **dict(model_args, **kwargs))
