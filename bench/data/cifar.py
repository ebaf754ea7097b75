"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009), read from the official "python version" pickles.

Each pickle holds ``b'data'``, uint8 [N, 3072] with one row per image: the red, green and blue
32×32 planes in row-major order, which is already CHW. Both datasets fit in memory whole
(50,000 + 10,000 images), so they are returned as ``ImageTensors`` for the resident path. The
pickles are read by an unpickler that builds only builtin containers and numpy arrays.
Default location: ``<--cache-dir>/data/<name>``; ``--download`` uses torchvision.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.data.base import DataRequest, DatasetInfo, ImageTensors, LoadedDataset, register_dataset
from registry import ConfigError

HOME_PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"
READ_ERRORS = (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError, AttributeError)
# The only globals a CIFAR pickle refers to: numpy's array rebuilding, and how Python 3 pickles bytes.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class CifarUnpickler(pickle.Unpickler):
    """Builtin containers and numpy arrays only: a crafted file in --data-dir cannot run code."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}, which a CIFAR file never holds")
        return super().find_class(module, name)


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR variant keeps its batches, and which torchvision class downloads it."""

    title: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: bytes
    torchvision_class: str
    info: DatasetInfo


CIFAR10 = CifarLayout(
    "CIFAR-10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
    b"labels", "CIFAR10",
    DatasetInfo(name="cifar10", num_classes=10, in_chans=3, image_size=32,
                mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),  # training-set statistics
                augment="crop-flip", crop_padding=4),
)
CIFAR100 = CifarLayout(
    "CIFAR-100", "cifar-100-python", ("train",), ("test",), b"fine_labels", "CIFAR100",
    DatasetInfo(name="cifar100", num_classes=100, in_chans=3, image_size=32,
                mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),  # training-set statistics
                augment="crop-flip", crop_padding=4),
)


def read_batch(path: Path, layout: CifarLayout) -> tuple[np.ndarray, np.ndarray]:
    """One pickle as (uint8 [N, 3, 32, 32], int64 [N]); an unreadable file is a ``ConfigError``."""
    try:
        with open(path, "rb") as handle:
            batch = CifarUnpickler(handle, encoding="bytes").load()  # the files were written by Python 2
        data = np.asarray(batch[b"data"])
        labels = np.asarray(batch[layout.label_key], dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ValueError(f"b'data' is {data.dtype} {data.shape}, expected uint8 [N, 3072]")
        classes = layout.info.num_classes
        if labels.shape != (data.shape[0],) or labels.min(initial=0) < 0 or labels.max(initial=0) >= classes:
            raise ValueError(f"expected {data.shape[0]} labels in 0..{classes - 1}")
    except READ_ERRORS as exc:
        raise ConfigError(f"corrupt {layout.title} file {path} ({type(exc).__name__}: {exc}); "
                          f"download it again from {HOME_PAGE} or pass --download") from None
    return data.reshape(-1, 3, 32, 32), labels


def _read_split(folder: Path, files: tuple[str, ...], layout: CifarLayout) -> ImageTensors:
    images, labels = zip(*(read_batch(folder / name, layout) for name in files))
    return ImageTensors(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)))


def _download(layout: CifarLayout, root: Path) -> None:
    import torchvision

    try:
        getattr(torchvision.datasets, layout.torchvision_class)(str(root), download=True)
    except (OSError, RuntimeError) as exc:  # no network raises URLError, an OSError
        raise ConfigError(f"could not download {layout.title} into {root} ({exc}); "
                          f"get the python version from {HOME_PAGE} and pass --data-dir DIR") from None


def load_cifar(layout: CifarLayout, request: DataRequest) -> LoadedDataset:
    """Both splits of one CIFAR variant from ``<root>/<folder>``, downloading them if asked to."""
    if request.train_split not in (None, "train"):
        raise ConfigError(f"{layout.info.name} has no train split '{request.train_split}'; expected: train")
    root = Path(request.root).expanduser() if request.root else request.default_root(layout.info.name)
    folder = root / layout.folder
    files = layout.train_files + layout.test_files
    if not all((folder / name).is_file() for name in files):
        if not request.download:
            raise ConfigError(f"{layout.title} not found: expected {folder}/{{{','.join(files)}}} "
                              f"(python version from {HOME_PAGE}); pass --data-dir DIR or --download")
        _download(layout, root)
    return LoadedDataset(layout.info, _read_split(folder, layout.train_files, layout),
                         _read_split(folder, layout.test_files, layout))


@register_dataset("cifar10")
def load_cifar10(request: DataRequest) -> LoadedDataset:
    return load_cifar(CIFAR10, request)


@register_dataset("cifar100")
def load_cifar100(request: DataRequest) -> LoadedDataset:
    return load_cifar(CIFAR100, request)
