"""Fashion-MNIST from idx files in its native format, and the reproducible batch stream."""

from __future__ import annotations

import gzip
from pathlib import Path
import struct

import numpy as np
import pytest
import torch

from bench.data import DataRequest, load_dataset, make_stream
from bench.data.fashion_mnist import DEBIAN_DIR
from registry import ConfigError


def write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", n) for n in array.shape)
    with gzip.open(path, "wb") as out:
        out.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def idx_dir(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 12), ("t10k", 5)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (count, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(count) % 10)
    return tmp_path


def test_reads_native_idx_files(idx_dir):
    data = load_dataset("fashion-mnist", DataRequest(root=idx_dir))
    assert data.train.images.shape == (12, 1, 28, 28) and data.train.images.dtype == torch.uint8
    assert data.test.labels.tolist() == [0, 1, 2, 3, 4]
    with gzip.open(idx_dir / "train-images-idx3-ubyte.gz") as raw:
        first = np.frombuffer(raw.read(), np.uint8, offset=16)[:784].reshape(28, 28)
    assert torch.equal(data.train.images[0, 0], torch.from_numpy(first.copy()))


def test_missing_and_corrupt_files_are_one_line_errors(idx_dir, tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(ConfigError, match="Fashion-MNIST not found .* 'apt-get install dataset-fashion-mnist'"):
        load_dataset("fashion-mnist", DataRequest(root=empty))
    (idx_dir / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(ConfigError, match="corrupt Fashion-MNIST file") as error:
        load_dataset("fashion-mnist", DataRequest(root=idx_dir))
    assert "\n" not in str(error.value)


@pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_dataset_from_the_debian_package():
    data = load_dataset("fashion-mnist", DataRequest())
    assert len(data.train) == 60000 and len(data.test) == 10000
    assert sorted(data.train.labels.bincount().tolist()) == [6000] * 10


def test_batch_order_depends_only_on_seed_and_epoch():
    data = load_dataset("synthetic", DataRequest())

    def indices(seed, epoch):
        stream = make_stream(data.train, data.info, 32, torch.device("cpu"), train=True, seed=seed)
        return torch.cat([idx for _, _, idx in stream.epoch(epoch)])

    assert torch.equal(indices(0, 3), indices(0, 3))
    assert not torch.equal(indices(0, 3), indices(0, 4)) and not torch.equal(indices(0, 3), indices(1, 3))
    assert sorted(indices(0, 0).tolist()) == list(range(len(data.train)))  # a permutation, last batch full


def test_test_stream_covers_every_example_once_without_augmentation():
    data = load_dataset("synthetic", DataRequest())
    stream = make_stream(data.test, data.info, 50, torch.device("cpu"), train=False, seed=0)
    images = torch.cat([x for x, _, _ in stream.epoch(0)])
    assert torch.equal(images, data.test.images)


def test_a_failed_download_is_one_line_and_writes_only_under_the_cache_dir(tmp_path, monkeypatch, cli):
    import torchvision

    import bench.data.fashion_mnist as fashion_mnist

    home, cache = tmp_path / "home", tmp_path / "cache"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "not-installed")
    asked = []

    def offline(root, train, download):  # torchvision's downloader without a network: a partial file, then an error
        asked.append(root)
        (Path(root) / "FashionMNIST" / "raw").mkdir(parents=True, exist_ok=True)
        (Path(root) / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b")
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://..., got URLError")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    result = cli("run", "--download", "--cache-dir", cache, "--results-dir", tmp_path / "results", "--device", "cpu")
    assert result.code == 2 and result.err.count("\n") == 1
    assert result.err.startswith(f"error: could not download Fashion-MNIST into {cache / 'data' / 'fashion-mnist'} "
                                 "(Error downloading train-images-idx3-ubyte.gz:)")
    assert asked == [str(cache / "data" / "fashion-mnist")] and not list(home.iterdir())
    assert not (tmp_path / "results").exists()
