"""What every CIFAR architecture of the zoo shares: timm's model surface, config and registration.

A family builds up to four parts and hands them to :meth:`CifarNet.assemble`; :class:`CifarNet`
provides the rest of timm's surface (``forward_features``, ``forward_head``,
``forward_intermediates``, ``prune_intermediate_layers``, ``get_classifier``, ``reset_classifier``,
``set_grad_checkpointing``, ``group_matcher``):

* ``stem`` — the input layer(s); its output is feature 0;
* ``stages`` — an ``nn.Sequential``; the output of ``stages[i]`` is feature ``i + 1``;
* ``norm`` — a final norm-activation after the last stage (pre-activation networks: WRN);
* ``conv_head`` — a 1x1 convolution to the head width after the last stage (MobileNetV2, ShuffleNetV2).

``norm`` and ``conv_head`` are ``nn.Identity`` in the families that have none. ``feature_info`` lists
the stem and every stage (``num_chs``, ``reduction``, ``module``); ``num_features`` is the width the
global pool sees, which differs from the last stage's width where there is a ``conv_head``.

Pre-activation taps (OFD, Heo et al. 2019): a family that defines ``stage_preact`` offers
``forward_preact_intermediates`` — every stage's output before its final ReLU — and says in
``preact_norms`` which BatchNorm produced each of them (the teacher's margin), or ``None`` when no
single BatchNorm does (ShuffleNet, which mdistiller does not support as an OFD teacher either).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import create_classifier
from timm.models import build_model_with_cfg, checkpoint_seq, is_model, model_entrypoint
from timm.models import register_model as timm_register_model
from timm.models._features import feature_take_indices

CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


def cifar_cfg(**kwargs: Any) -> dict[str, Any]:
    """Pretrained config of a CIFAR-100 model: 32x32 inputs, CIFAR-100 statistics, no weights.

    No ``url``, ``file`` or ``hf_hub_id``, so timm never downloads anything for these models:
    ``pretrained=True`` fails fast (or warns, in older timm) instead.
    """
    return {
        'url': '',
        'num_classes': 100,
        'input_size': (3, 32, 32),
        'pool_size': (8, 8),
        'crop_pct': 1.0,
        'interpolation': 'bilinear',
        'mean': CIFAR100_MEAN,
        'std': CIFAR100_STD,
        'first_conv': 'stem.0',
        'classifier': 'fc',
        'origin_url': 'https://github.com/HobbitLong/RepDistiller',
        'paper_ids': 'arXiv:1910.10699',
        **kwargs,
    }


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """timm's ``register_model``, refusing to replace a model that another module registered.

    timm itself only warns and overwrites; a CIFAR variant silently replacing an ImageNet model of
    the same name would change every experiment that uses it, so such a name takes a ``_cifar`` suffix.
    """
    name = fn.__name__
    if is_model(name):
        owner = model_entrypoint(name).__module__
        if owner != fn.__module__:
            raise RuntimeError(
                f"model name {name!r} is already registered by {owner}; "
                f"register the CIFAR variant as {name + '_cifar'!r} instead"
            )
    return timm_register_model(fn)


def build_cifar_model(model_cls: type[nn.Module], variant: str, pretrained: bool, num_taps: int, **kwargs: Any):
    """Build a registered variant through timm's builder (config, ``features_only``, kwargs).

    ``num_taps`` is the number of entries of the variant's ``feature_info``; ``features_only=True``
    wraps the model in timm's ``FeatureGetterNet``, which reads ``forward_intermediates``.
    ``device``/``dtype`` are accepted as in current timm models and applied after construction.
    """
    device, dtype = kwargs.pop('device', None), kwargs.pop('dtype', None)
    model = build_model_with_cfg(
        model_cls,
        variant,
        pretrained,
        feature_cfg=dict(feature_cls='getter', out_indices=kwargs.pop('out_indices', num_taps)),
        **kwargs,
    )
    if device is not None or dtype is not None:
        model = model.to(device=device, dtype=dtype)
    return model


class Stage(NamedTuple):
    """One stage as a family builds it: the module, its output channels and its overall stride."""

    module: nn.Module
    out_chs: int
    stride: int


def batch_norm_again(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``bn(x)`` as the network computes it anyway, without moving ``bn``'s running statistics twice a step."""
    batch_stats = bn.training or bn.running_mean is None
    return F.batch_norm(x, None if batch_stats else bn.running_mean, None if batch_stats else bn.running_var,
                        bn.weight, bn.bias, batch_stats, 0.0, bn.eps)


def last_block_preact(blocks: nn.Sequential, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A stage whose last block offers ``preact`` (its output before the final ReLU): (that, its ReLU)."""
    preact = blocks[-1].preact(blocks[:-1](x))
    return preact, F.relu(preact)


def conv_bn(in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1, groups: int = 1, act: bool = True):
    """Convolution (no bias, 'same' padding) + BatchNorm, followed by ReLU when ``act``."""
    layers = [
        nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding=kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_chs),
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class CifarNet(nn.Module):
    """Base of the CIFAR architectures: timm's model surface over ``stem``/``stages``/``norm``/``conv_head``.

    A subclass calls ``super().__init__(in_chans, drop_rate)``, builds its stem and stages (in that
    order: construction order is the order random initialisation draws in) and hands them to
    :meth:`assemble`.

    The constructor arguments every family takes:

    Args:
        num_classes: Classifier outputs (0 for none).
        in_chans: Input image channels.
        drop_rate: Dropout before the classifier.
        global_pool: timm pooling type ('avg', 'max', 'avgmax', 'catavgmax', '').
    """

    # (stage index, its input) -> (its output before the final ReLU, its output); None: no pre-activation taps
    stage_preact: Callable[[int, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None

    def __init__(self, in_chans: int, drop_rate: float) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        self.feature_info: list[dict[str, Any]] = []
        self.num_features = self.head_hidden_size = 0
        self.num_classes = 0

    def assemble(self, stem: nn.Module, stem_chs: int, stages: Sequence[Stage], num_classes: int, global_pool: str,
                 *, stem_reduction: int = 1, norm: nn.Module | None = None, head: tuple[nn.Module, int] | None = None) -> None:
        """Register the parts (stem, stages, norm, conv_head, then the classifier, always in this order),
        describe every tap in ``feature_info`` and size the classifier.

        ``head`` is a family's ``(conv_head, its output channels)``; without one the pool sees the last stage.
        """
        self.stem = stem
        self.feature_info = [dict(num_chs=stem_chs, reduction=stem_reduction, module='stem')]
        reduction = stem_reduction
        for i, stage in enumerate(stages):
            reduction *= stage.stride
            self.feature_info.append(dict(num_chs=stage.out_chs, reduction=reduction, module=f'stages.{i}'))
        self.stages = nn.Sequential(*(stage.module for stage in stages))
        self.norm = norm or nn.Identity()
        self.conv_head, num_features = head or (nn.Identity(), stages[-1].out_chs)
        self.num_features = self.head_hidden_size = num_features
        self.reset_classifier(num_classes, global_pool)

    @torch.jit.ignore
    def init_weights(self, linear_std: float | None = None) -> None:
        """He (fan-out) initialisation of every convolution with zero bias; BatchNorm keeps weight 1,
        bias 0. Linear layers get N(0, ``linear_std``) weights and zero bias when ``linear_std`` is given,
        otherwise PyTorch's default."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear) and linear_std is not None:
                nn.init.normal_(m.weight, std=linear_std)
                nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(stem=r'^stem', blocks=r'^stages\.(\d+)' if coarse else r'^stages\.(\d+)\.(\d+)')

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self, name_only: bool = False) -> nn.Module | str:
        return 'fc' if name_only else self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the head: ``num_classes=0`` leaves pooling only; ``global_pool=''`` no pooling."""
        if global_pool is None:
            global_pool = self.global_pool.pool_type
        self.num_classes = num_classes
        self.global_pool, self.fc = create_classifier(self.num_features, num_classes, pool_type=global_pool)
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        reference = next(self.stem.parameters(), None)
        if reference is not None:  # the new head lives where the model lives
            self.global_pool.to(reference.device, reference.dtype)
            self.fc.to(reference.device, reference.dtype)
        self.global_pool.train(self.training)
        self.fc.train(self.training)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: int | list[int] | None = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stem and stage outputs, as timm's ``forward_intermediates``.

        Args:
            x: Input images, NCHW.
            indices: Take the last n taps if int, all if None, the listed taps (negative from the end)
                if a sequence; tap 0 is the stem, tap i the output of stage i.
            norm: Apply the final ``norm`` to the last stage's output when it is taken.
            stop_early: Stop after the last requested tap (the returned final features are then the
                output of that stage, not of the whole network).
            output_fmt: Only ``'NCHW'``.
            intermediates_only: Return only the list of taps.

        Returns:
            The list of taps, or ``(final features, taps)`` where the final features equal
            ``forward_features(x)`` when the whole network ran.
        """
        assert output_fmt == 'NCHW', 'Output format must be NCHW.'
        take_indices, max_index = feature_take_indices(len(self.stages) + 1, indices)
        last_idx = len(self.stages)

        intermediates = []
        x = self.stem(x)
        if 0 in take_indices:
            intermediates.append(x)
        stages = self.stages if torch.jit.is_scripting() or not stop_early else self.stages[:max_index]
        feat_idx, normed = 0, False
        for feat_idx, stage in enumerate(stages, start=1):
            x = stage(x)
            if feat_idx in take_indices:
                if norm and feat_idx == last_idx:
                    x, normed = self.norm(x), True
                intermediates.append(x)

        if intermediates_only:
            return intermediates
        if feat_idx == last_idx:
            x = self.conv_head(x if normed else self.norm(x))
        return x, intermediates

    def forward_preact_intermediates(
            self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """One pass giving ``(final features, taps, pre-activation taps)``: the first two as
        ``forward_intermediates(x)``, then each stage's output before its final ReLU (families that
        define ``stage_preact``)."""
        if self.stage_preact is None:
            raise NotImplementedError(f'{type(self).__name__} has no pre-activation taps')
        x = self.stem(x)
        taps, preacts = [x], []
        for i in range(len(self.stages)):
            preact, x = self.stage_preact(i, x)
            taps.append(x)
            preacts.append(preact)
        return self.conv_head(self.norm(x)), taps, preacts

    def preact_norms(self) -> list[nn.BatchNorm2d] | None:
        """The BatchNorm whose output (before any residual sum) makes each pre-activation tap, as the OFD
        authors read their margins; ``None`` where the family has no such BatchNorm."""
        return None

    def prune_intermediate_layers(
            self,
            indices: int | list[int] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> list[int]:
        """Drop the stages after the last requested tap (and the head); returns the kept indices."""
        take_indices, max_index = feature_take_indices(len(self.stages) + 1, indices)
        prune_end = max_index < len(self.stages)
        self.stages = self.stages[:max_index]
        if prune_norm or prune_end:
            self.norm = nn.Identity()
        if prune_head or prune_end:
            self.conv_head = nn.Identity()
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Final feature map (NCHW), the input of the global pool."""
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.stages, x)
        else:
            x = self.stages(x)
        return self.conv_head(self.norm(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global pool (+ dropout) and classifier; ``pre_logits=True`` returns the pooled embedding."""
        x = self.global_pool(x)
        if self.drop_rate:
            x = F.dropout(x, p=float(self.drop_rate), training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
