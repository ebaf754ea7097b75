"""What a dataset is to the harness: its facts (``DatasetInfo``) and its splits (train, test, and a
validation split once one is carved from train).

Small datasets (CIFAR, SVHN, Fashion-MNIST) are held whole as uint8 tensors (``ImageTensors``) so
they can live on the training device and be augmented with batched tensor ops. Datasets too large
for memory (ImageNet) are ordinary torch ``Dataset``s whose items are ``(float image in [0, 1],
label)`` with their augmentation already inside. Normalisation is never done here: each model
normalises with its own mean/std (see ``bench.models.network``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

import torch
from torch import Tensor
from torch.utils.data import Dataset

from registry import Registry

AUGMENTATIONS = ("crop-flip", "crop", "none")


@dataclass(frozen=True)
class DatasetInfo:
    """Facts about a dataset that models, recipes and augmentation depend on."""

    name: str
    num_classes: int
    in_chans: int
    image_size: int  # height = width of the images the models see
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str  # train augmentation of in-memory splits, one of AUGMENTATIONS
    crop_padding: int = 4  # zero padding of the random crop ("crop", "crop-flip")


@dataclass
class ImageTensors:
    """A whole split in memory: ``images`` uint8 [N, C, H, W], ``labels`` int64 [N]."""

    images: Tensor
    labels: Tensor

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError("one label per image expected")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return self.images.shape[0]


Split = Union[ImageTensors, Dataset]


@dataclass
class LoadedDataset:
    info: DatasetInfo
    train: Split
    test: Split
    validation: Split | None = None  # carved from the training split (bench.data.validation); None: not carved


@dataclass(frozen=True)
class DataRequest:
    """Where and how to load a dataset, as the user asked for it."""

    root: Path | None = None  # --data-dir; None means the dataset's default location
    download: bool = False  # --download: fetch with torchvision's downloader where one exists
    train_split: str | None = None  # e.g. SVHN "train+extra"; None means the dataset's default
    cache_dir: Path = Path.home() / ".cache" / "distillbench"  # --cache-dir: downloads go under it, nowhere else

    def default_root(self, name: str) -> Path:
        """Where dataset ``name`` is looked for without --data-dir, and downloaded to."""
        return Path(self.cache_dir).expanduser() / "data" / name


DatasetLoader = Callable[[DataRequest], LoadedDataset]
DATASETS: "Registry[DatasetLoader]" = Registry("dataset")
register_dataset = DATASETS.register


def load_dataset(name: str, request: DataRequest) -> LoadedDataset:
    """Load a registered dataset; errors are ``ConfigError`` lines saying how to get the data."""
    return DATASETS.get(name)(request)
