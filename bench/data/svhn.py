"""SVHN (Netzer et al. 2011), the cropped-digits "format 2" .mat files, held in memory as uint8.

Each ``<part>_32x32.mat`` holds ``X`` uint8 [32, 32, 3, N] (height, width, channel, image) and
``y`` [N, 1] with digits 1-9 as themselves and digit 0 as label 10. The train split is ``train``
(73,257 images) or ``train+extra`` (604,388); the test split is ``test`` (26,032). No horizontal
flip: a mirrored digit is a different symbol. Default location: ``<--cache-dir>/data/svhn``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.data.base import DataRequest, DatasetInfo, ImageTensors, LoadedDataset, register_dataset
from registry import ConfigError

HOME_PAGE = "http://ufldl.stanford.edu/housenumbers/"
TRAIN_SPLITS = {"train": ("train",), "train+extra": ("train", "extra")}
INFO = DatasetInfo(
    name="svhn", num_classes=10, in_chans=3, image_size=32,
    # Per-channel statistics of the train split, the values in common use
    # (e.g. the SVHN entries of public CIFAR/SVHN training code).
    mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970),
    augment="crop", crop_padding=4,
)


def read_mat(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One part as (uint8 [N, 3, 32, 32] view, int64 [N] with digit 0 as 0); unreadable → ``ConfigError``."""
    import scipy.io  # imported on use: it slows down every command that lists datasets

    try:
        mat = scipy.io.loadmat(path)
        x, y = mat["X"], np.asarray(mat["y"]).reshape(-1).astype(np.int64)
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
            raise ValueError(f"'X' is {x.dtype} {x.shape}, expected uint8 [32, 32, 3, N]")
        if y.shape != (x.shape[3],) or y.min(initial=1) < 1 or y.max(initial=1) > 10:
            raise ValueError(f"expected {x.shape[3]} labels in 1..10")
    except (OSError, ValueError, TypeError, KeyError, IndexError, scipy.io.matlab.MatReadError) as exc:
        raise ConfigError(f"corrupt SVHN file {path} ({type(exc).__name__}: {exc}); "
                          f"download it again from {HOME_PAGE} or pass --download") from None
    labels = np.where(y == 10, 0, y)  # the files store digit 0 as 10
    return torch.from_numpy(x).permute(3, 2, 0, 1), torch.from_numpy(labels)


def _read_split(root: Path, parts: tuple[str, ...]) -> ImageTensors:
    images, labels = zip(*(read_mat(root / f"{part}_32x32.mat") for part in parts))
    return ImageTensors(torch.cat(images), torch.cat(labels))  # cat also makes the views contiguous


def _download(root: Path, parts: tuple[str, ...]) -> None:
    import torchvision

    try:
        for part in parts:
            torchvision.datasets.SVHN(str(root), split=part, download=True)
    except (OSError, RuntimeError) as exc:  # no network raises URLError, an OSError
        raise ConfigError(f"could not download SVHN into {root} ({exc}); "
                          f"get format 2 from {HOME_PAGE} and pass --data-dir DIR") from None


@register_dataset("svhn")
def load_svhn(request: DataRequest) -> LoadedDataset:
    train_parts = TRAIN_SPLITS.get(request.train_split or "train")
    if train_parts is None:
        raise ConfigError(f"svhn has no train split '{request.train_split}'; "
                          f"expected one of: {', '.join(TRAIN_SPLITS)}")
    root = Path(request.root).expanduser() if request.root else request.default_root("svhn")
    parts = (*train_parts, "test")
    if not all((root / f"{part}_32x32.mat").is_file() for part in parts):
        if not request.download:
            raise ConfigError(f"SVHN not found: expected {root}/{{{','.join(parts)}}}_32x32.mat "
                              f"(format 2 from {HOME_PAGE}); pass --data-dir DIR or --download")
        _download(root, parts)
    return LoadedDataset(INFO, _read_split(root, train_parts), _read_split(root, ("test",)))
