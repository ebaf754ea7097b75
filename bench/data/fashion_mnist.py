"""Fashion-MNIST (Xiao et al. 2017): the real dataset that is available offline, read from idx files.

Looked up in ``--data-dir``, then in the Debian package's location
(``apt install dataset-fashion-mnist`` → /usr/share/datasets/fashion-mnist/), then downloaded with
torchvision when ``--download`` is given.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from bench.data.base import DataRequest, DatasetInfo, ImageTensors, LoadedDataset, register_dataset
from registry import ConfigError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
INFO = DatasetInfo(
    name="fashion-mnist", num_classes=10, in_chans=1, image_size=28,
    mean=(0.2860,), std=(0.3530,),  # training-set statistics
    augment="crop-flip", crop_padding=2,
)
HOW_TO_GET = ("install it with 'apt-get install dataset-fashion-mnist' (as root, or with sudo), pass --data-dir DIR, "
              "or add --download")


def read_idx(path: Path) -> np.ndarray:
    """Parse an idx file (optionally gzipped): magic, dimension sizes, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
        ndim = raw[3]
        shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
        if raw[2] != 0x08:
            raise ValueError("not uint8 data")
        return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)
    except (OSError, ValueError, IndexError, EOFError) as exc:
        raise ConfigError(f"corrupt Fashion-MNIST file {path} ({exc}); {HOW_TO_GET}") from None


def _find(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem, directory / "FashionMNIST" / "raw" / stem):
        if candidate.is_file():
            return candidate
    return None


def _read_split(directory: Path, split: str) -> ImageTensors:
    images_stem, labels_stem = FILES[split]
    images, labels = (read_idx(_find(directory, stem)) for stem in (images_stem, labels_stem))
    if images.shape[0] != labels.shape[0]:
        raise ConfigError(f"corrupt Fashion-MNIST in {directory}: {images.shape[0]} images but {labels.shape[0]} labels")
    return ImageTensors(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))


def _has_all(directory: Path) -> bool:
    return all(_find(directory, stem) for pair in FILES.values() for stem in pair)


@register_dataset("fashion-mnist")
def load_fashion_mnist(request: DataRequest) -> LoadedDataset:
    if request.train_split not in (None, "train"):
        raise ConfigError(f"fashion-mnist has no train split '{request.train_split}'; expected: train")
    candidates = [request.root] if request.root else [DEBIAN_DIR]
    directory = next((d for d in candidates if _has_all(d)), None)
    if directory is None and request.download:
        import torchvision

        directory = request.root or request.default_root("fashion-mnist")
        try:
            for train in (True, False):
                torchvision.datasets.FashionMNIST(str(directory), train=train, download=True)
        except (OSError, RuntimeError) as exc:  # no network raises URLError, an OSError
            raise ConfigError(f"could not download Fashion-MNIST into {directory} ({(str(exc).splitlines() or [''])[0]}); "
                              f"install it with apt (see README) or pass --data-dir DIR") from None
    if directory is None:
        raise ConfigError(f"Fashion-MNIST not found in {candidates[0]} (expected train/t10k idx files); {HOW_TO_GET}")
    return LoadedDataset(INFO, _read_split(directory, "train"), _read_split(directory, "test"))
