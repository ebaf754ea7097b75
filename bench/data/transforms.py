"""In-memory splits as per-image torch Datasets: the DataLoader path (``--data-path loader``).

The resident path (``bench.data.augment``) augments whole batches on the device; this path applies
torchvision's ``RandomCrop(size, padding=p)`` and ``RandomHorizontalFlip()`` image by image in
loader workers, as most published training code does. Both draw crops and flips from the same
distribution (tested), so either path can reproduce the other's protocol.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.utils.data import Dataset

from bench.data.base import AUGMENTATIONS, DatasetInfo, ImageTensors
from registry import ConfigError


class TransformedImages(Dataset):
    """Items ``(float image in [0, 1] [C, H, W], int label)`` of an in-memory split."""

    def __init__(self, split: ImageTensors, transform: Callable[[Tensor], Tensor]):
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.transform(self.split.images[index]), int(self.split.labels[index])


def augmentation(info: DatasetInfo, size: tuple[int, int]) -> list[Callable[[Tensor], Tensor]]:
    """torchvision's per-image equivalent of ``bench.data.augment.augment`` for ``info.augment``."""
    from torchvision.transforms import v2  # imported on use: it slows down every command that lists datasets

    crop = v2.RandomCrop(size, padding=info.crop_padding)  # zero padding, like the batched crop
    steps = {"crop-flip": [crop, v2.RandomHorizontalFlip()], "crop": [crop], "none": []}
    if info.augment not in steps:
        raise ConfigError(f"unknown augmentation '{info.augment}'; expected one of: {', '.join(AUGMENTATIONS)}")
    return steps[info.augment]


def as_loader_split(split: ImageTensors, info: DatasetInfo, train: bool) -> Dataset:
    """Wrap an in-memory split for a ``DataLoader``; train splits get the dataset's augmentation."""
    from torchvision.transforms import v2

    steps = augmentation(info, tuple(split.images.shape[-2:])) if train else []
    return TransformedImages(split, v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True)]))
