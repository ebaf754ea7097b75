"""ImageNet-1k (ILSVRC 2012) as torch Datasets of JPEG files, decoded and augmented in loader workers.

Two layouts of the data directory are understood:

* class folders ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG`` (validation images sorted into
  class folders), read with torchvision's ``ImageFolder``;
* the official archives ``ILSVRC2012_img_train.tar``, ``ILSVRC2012_img_val.tar`` and
  ``ILSVRC2012_devkit_t12.tar.gz``, given to torchvision's ``ImageNet``, which extracts them once
  into the class-folder layout (plus a parsed ``meta.bin``) and reuses that afterwards.

ImageNet needs registration, so it cannot be downloaded for the user. The class count comes from
the folders, so a class subset (e.g. ImageNet-100) laid out the same way loads too.
Default location: ``~/.cache/distillbench/data/imagenet``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from tarfile import TarError
from typing import Any, Callable

import torch
from torch.utils.data import Dataset

from bench.data.base import DataRequest, DatasetInfo, LoadedDataset, register_dataset
from registry import ConfigError

SPLITS = {"train": "ILSVRC2012_img_train.tar", "val": "ILSVRC2012_img_val.tar"}  # split folder → archive
DEVKIT, META = "ILSVRC2012_devkit_t12.tar.gz", "meta.bin"  # meta.bin: torchvision's parsed devkit
HOW_TO_GET = ("register at https://image-net.org/download.php and download ILSVRC 2012 "
              "(it cannot be fetched automatically); pass --data-dir DIR")
INFO = DatasetInfo(
    name="imagenet", num_classes=1000, in_chans=3, image_size=224,
    mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
    augment="none", crop_padding=0,  # no resident augmentation: the transforms below augment
)


def split_transform(split: str) -> Callable[[Any], torch.Tensor]:
    """The standard ImageNet pipeline of one split, ending as float CHW in [0, 1] (not normalised)."""
    from torchvision.transforms import v2  # imported on use: it slows down every command that lists datasets

    if split == "train":
        steps = [v2.RandomResizedCrop(224), v2.RandomHorizontalFlip()]
    else:
        steps = [v2.Resize(256), v2.CenterCrop(224)]
    return v2.Compose([*steps, v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])  # the last two = ToTensor


def _has_archive_layout(root: Path) -> bool:
    return any((root / name).is_file() for name in (*SPLITS.values(), DEVKIT, META))


def _archive_splits(root: Path) -> tuple[Dataset, Dataset]:
    import torchvision

    missing = [] if (root / DEVKIT).is_file() or (root / META).is_file() else [DEVKIT]
    missing += [archive for split, archive in SPLITS.items()
                if not ((root / archive).is_file() or (root / split).is_dir())]
    if missing:
        raise ConfigError(f"ImageNet archives incomplete in {root}: missing {', '.join(missing)}; {HOW_TO_GET}")
    try:
        return tuple(torchvision.datasets.ImageNet(str(root), split=split, transform=split_transform(split))
                     for split in SPLITS)
    except (OSError, RuntimeError, TarError, ValueError, KeyError) as exc:
        raise ConfigError(f"cannot read the ImageNet archives in {root} ({exc}); {HOW_TO_GET}") from None


def _folder_splits(root: Path) -> tuple[Dataset, Dataset]:
    from torchvision.datasets import ImageFolder

    if not all((root / split).is_dir() for split in SPLITS):
        raise ConfigError(f"ImageNet not found: expected {root}/{{train,val}}/<wnid>/*.JPEG or the archives "
                          f"{', '.join((*SPLITS.values(), DEVKIT))} in {root}; {HOW_TO_GET}")
    try:
        return tuple(ImageFolder(str(root / split), transform=split_transform(split)) for split in SPLITS)
    except FileNotFoundError as exc:  # no class folders, or a class folder without images
        raise ConfigError(f"ImageNet in {root} is incomplete ({exc}); {HOW_TO_GET}") from None


@register_dataset("imagenet")
def load_imagenet(request: DataRequest) -> LoadedDataset:
    if request.train_split not in (None, "train"):
        raise ConfigError(f"imagenet has no train split '{request.train_split}'; expected: train")
    root = Path(request.root).expanduser() if request.root else request.default_root("imagenet")
    train, test = _archive_splits(root) if _has_archive_layout(root) else _folder_splits(root)
    if train.classes != test.classes:
        raise ConfigError(f"ImageNet train and val in {root} have different classes "
                          f"({len(train.classes)} vs {len(test.classes)} class folders); {HOW_TO_GET}")
    return LoadedDataset(replace(INFO, num_classes=len(train.classes)), train, test)
