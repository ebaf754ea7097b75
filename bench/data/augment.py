"""Batched train-time augmentation of uint8 image tensors, on whatever device they live.

One indexing op per batch instead of per-image Python, so the same code is the fast path on a
GPU and a cheap path on a CPU. The distribution matches torchvision's
``RandomCrop(size, padding=p)`` + ``RandomHorizontalFlip()`` (tested statistically).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.data.base import AUGMENTATIONS, DatasetInfo
from registry import ConfigError


def random_crop(images: Tensor, padding: int, generator: torch.Generator) -> Tensor:
    """Zero-pad by ``padding`` and take one uniformly placed crop of the original size per image."""
    n, _, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (2, n, 1), generator=generator, device=images.device)
    rows = offsets[0] + torch.arange(h, device=images.device)  # [N, H]
    cols = offsets[1] + torch.arange(w, device=images.device)  # [N, W]
    batch = torch.arange(n, device=images.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def random_flip(images: Tensor, generator: torch.Generator) -> Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = torch.rand(images.shape[0], generator=generator, device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def augment(images: Tensor, info: DatasetInfo, generator: torch.Generator) -> Tensor:
    """Apply the dataset's train augmentation (``info.augment``) to a uint8 batch."""
    if info.augment not in AUGMENTATIONS:
        raise ConfigError(f"unknown augmentation '{info.augment}'; expected one of: {', '.join(AUGMENTATIONS)}")
    if info.augment in ("crop", "crop-flip"):
        images = random_crop(images, info.crop_padding, generator)
    if info.augment == "crop-flip":
        images = random_flip(images, generator)
    return images
