"""Teacher and student networks: timm models by name, their input normalisation, their outputs.

``Network.extract`` is the one place a model's outputs reach the losses: timm's
``forward_intermediates`` when a loss needs stage features (``forward_features`` otherwise), then
``forward_head`` for logits and, when needed, the pooled pre-logits embedding. Pre-activation stage
features come from the CIFAR zoo's ``forward_preact_intermediates`` (in the same pass as the stage
features); other models give none, and asking them is a ``ConfigError``.

Small inputs. Models registered by ``bench.models.zoo`` (the CIFAR architectures) are designed for 32 px
and run unchanged. An ImageNet-designed timm model given images smaller than 64 px has its first
stride-2 stem convolution set to stride 1 and its stem max-pool removed (``adapt_stem``), so a
28 px image is not reduced to a single pixel before the last stage; any other model runs
unchanged. The decision is recorded as ``stem`` with every result.
"""

from __future__ import annotations

import difflib

import timm
import torch
from torch import Tensor, nn

import bench.models.zoo  # noqa: F401  (registers the CIFAR architectures in timm)
from bench.data.base import DatasetInfo
from losses.base import Need, ModelShapes, Outputs
from registry import ConfigError

SMALL_INPUT = 64  # below this many pixels an ImageNet stem is adapted
STEM_MODULES = ("conv1", "conv_stem", "stem")


class Network(nn.Module):
    """A timm model (``body``) together with the mean/std it expects its inputs normalised by."""

    def __init__(self, body: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.body = body
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 or [0, 1] float images -> normalised float images."""
        if images.dtype == torch.uint8:
            images = images.float().div_(255)
        return (images - self.mean) / self.std

    def forward(self, images: Tensor) -> Tensor:
        return self.body(self.normalize(images))

    @property
    def name(self) -> str:
        return self.body.pretrained_cfg.get("architecture", type(self.body).__name__)

    def extract(self, images: Tensor, needs: frozenset[Need]) -> Outputs:
        """Logits always (cross-entropy needs them); features, pre-activation features, embedding when asked."""
        x = self.normalize(images)
        preact = []
        if Need.PREACT_FEATURES in needs:
            if not gives_preact(self.body):
                raise ConfigError(f"model '{self.name}' gives no pre-activation stage features; models that do: "
                                  f"{PREACT_MODELS}")
            final, features, preact = self.body.forward_preact_intermediates(x)
            features = features if Need.FEATURES in needs else []
        elif Need.FEATURES in needs:
            final, features = self.body.forward_intermediates(x)
        else:
            final, features = self.body.forward_features(x), []
        embedding = self.body.forward_head(final, pre_logits=True) if Need.EMBEDDING in needs else None
        return Outputs(logits=self.body.forward_head(final), features=tuple(features), embedding=embedding,
                       preact_features=tuple(preact), feature_map=final if Need.FEATURE_MAP in needs else None)


PREACT_MODELS = ("the CIFAR zoo's resnet8..resnet110, resnet8x4, resnet32x4, resnet50_cifar, wrn_*, vgg*_cifar, "
                 "mobilenetv2_cifar, shufflenetv1_cifar, shufflenetv2_cifar")


def gives_preact(body: nn.Module) -> bool:
    """Whether a model offers pre-activation stage features (the CIFAR zoo's ``stage_preact``)."""
    return getattr(body, "stage_preact", None) is not None


def model_error(name: str) -> ConfigError:
    close = difflib.get_close_matches(name, timm.list_models(), n=8, cutoff=0.6)
    hint = f"close matches: {', '.join(close)}" if close else "see timm.list_models() or 'bench pairs list'"
    return ConfigError(f"unknown model '{name}'; expected a timm model name ({hint})")


def check_model_name(name: str) -> None:
    """Fail early, before anything is trained or written."""
    if not timm.is_model(name.split(".")[0]):
        raise model_error(name)


def adapt_stem(body: nn.Module, image_size: int) -> str:
    """Make an ImageNet stem keep resolution on small inputs (see module docstring); returns what was done."""
    designed_for = body.pretrained_cfg.get("input_size", (3, 224, 224))[-1]
    if image_size >= SMALL_INPUT or designed_for < SMALL_INPUT:
        return "native"
    stem = next((getattr(body, n) for n in STEM_MODULES if isinstance(getattr(body, n, None), nn.Module)), None)
    conv = next((m for m in stem.modules() if isinstance(m, nn.Conv2d) and m.stride != (1, 1)), None) if stem else None
    if conv is None:
        return "native"
    conv.stride = (1, 1)
    if not isinstance(getattr(body, "maxpool", None), nn.MaxPool2d):
        return "stride1-stem"
    body.maxpool = nn.Identity()
    return "stride1-stem-no-maxpool"


def create_network(name: str, info: DatasetInfo, *, pretrained: bool = False) -> tuple[Network, str]:
    """Build ``name`` for ``info``'s images and classes; returns the network and its stem decision."""
    check_model_name(name)
    try:
        body = timm.create_model(name, pretrained=pretrained, num_classes=info.num_classes, in_chans=info.in_chans)
    except Exception as exc:  # pretrained weights need the internet; say so in one line
        if pretrained:
            raise ConfigError(
                f"could not load pretrained weights for '{name}' ({type(exc).__name__}); "
                "connect to the internet or pass --teacher-checkpoint FILE"
            ) from None
        raise
    stem = adapt_stem(body, info.image_size)
    cfg = body.pretrained_cfg
    own_stats = pretrained and len(cfg.get("mean", ())) == info.in_chans
    mean, std = (cfg["mean"], cfg["std"]) if own_stats else (info.mean, info.std)
    return Network(body, tuple(mean), tuple(std)), stem


@torch.no_grad()
def probe_shapes(network: Network, info: DatasetInfo, device: torch.device) -> ModelShapes:
    """Per-example shapes of every output, from one forward pass on a blank batch of two."""
    was_training = network.training
    network.eval()
    images = torch.zeros(2, info.in_chans, info.image_size, info.image_size, device=device)
    preact = frozenset({Need.PREACT_FEATURES}) if gives_preact(network.body) else frozenset()
    out = network.extract(images, frozenset({Need.FEATURES, Need.EMBEDDING, Need.FEATURE_MAP}) | preact)
    network.train(was_training)
    return ModelShapes(
        features=tuple(tuple(f.shape[1:]) for f in out.features),
        embedding=out.embedding.shape[1],
        num_classes=out.logits.shape[1],
        preact_features=tuple(tuple(f.shape[1:]) for f in out.preact_features),
        model=network.name,
        feature_map=tuple(out.feature_map.shape[1:]),
    )
