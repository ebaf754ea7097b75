"""The teacher's classifier, copied frozen into a loss (SRRL, SimKD pass student features through it).

The copy lives in two buffers of the loss, ``head_weight`` and ``head_bias``: saved with the loss's
checkpoint, outside its optimizer, filled in ``prepare`` from the teacher.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from registry import ConfigError


def hold_teacher_classifier(loss: nn.Module, num_classes: int, width: int) -> None:
    """Room in ``loss`` for a linear classifier from ``width`` features to ``num_classes``."""
    loss.register_buffer("head_weight", torch.zeros(num_classes, width))
    loss.register_buffer("head_bias", torch.zeros(num_classes))


def copy_teacher_classifier(loss: nn.Module, name: str, teacher: nn.Module) -> None:
    """Fill the buffers from the teacher network's classifier, which must be one linear layer of that shape."""
    head = teacher.body.get_classifier()
    if not isinstance(head, nn.Linear) or head.weight.shape != loss.head_weight.shape:
        raise ConfigError(f"{name} needs a teacher whose classifier is one linear layer on its pooled "
                          f"{loss.head_weight.shape[1]}-d features; this teacher's is {head}")
    loss.head_weight.copy_(head.weight.detach())
    loss.head_bias.copy_(head.bias.detach() if head.bias is not None else torch.zeros_like(loss.head_bias))


def teacher_classifier(loss: nn.Module, features: Tensor) -> Tensor:
    """The copied classifier applied to ``features`` [B, width], in their precision."""
    return F.linear(features, loss.head_weight.to(features.dtype), loss.head_bias.to(features.dtype))
