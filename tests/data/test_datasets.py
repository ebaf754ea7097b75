"""The paper's datasets read from tiny files written in each dataset's native on-disk format."""

from __future__ import annotations

import pickle
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import scipy.io
import torch
import torchvision
from PIL import Image

from helpers import COLOURS, IMAGES_PER_FILE, WNIDS, write_cifar, write_class_folders, write_svhn

from bench.data import cifar, imagenet, svhn  # noqa: F401  (registers the loaders)
from bench.data.base import DataRequest, load_dataset
from registry import ConfigError

CIFAR_LAYOUTS = {"cifar10": cifar.CIFAR10, "cifar100": cifar.CIFAR100}


def one_line_error(name: str, request: DataRequest, *fragments: str) -> str:
    """Load expecting a ConfigError; check it is one line naming every fragment."""
    with pytest.raises(ConfigError) as excinfo:
        load_dataset(name, request)
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# -- CIFAR: python-version pickles ----------------------------------------------------------------

@pytest.mark.parametrize("name", CIFAR_LAYOUTS)
def test_cifar_reads_official_pickles(tmp_path, name):
    layout = CIFAR_LAYOUTS[name]
    written = write_cifar(tmp_path, layout)
    data = load_dataset(name, DataRequest(root=tmp_path))
    train_images = np.concatenate([written[f][0] for f in layout.train_files])
    train_labels = sum((written[f][1] for f in layout.train_files), [])
    assert data.train.images.dtype == torch.uint8
    assert data.train.images.shape == (IMAGES_PER_FILE * len(layout.train_files), 3, 32, 32)
    assert data.test.images.shape == (IMAGES_PER_FILE, 3, 32, 32)
    assert np.array_equal(data.train.images.numpy(), train_images)  # batches concatenated in order
    assert data.train.labels.tolist() == train_labels
    assert data.test.labels.dtype == torch.int64
    assert (data.info.name, data.info.augment, data.info.crop_padding) == (name, "crop-flip", 4)
    assert data.info.num_classes == {"cifar10": 10, "cifar100": 100}[name]


def test_cifar_rows_are_red_green_blue_planes(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rows = np.zeros((1, 3072), dtype=np.uint8)
    rows[0, 0 * 1024 + 2 * 32 + 5] = 11  # red, row 2, column 5
    rows[0, 1 * 1024 + 31 * 32 + 0] = 22  # green, row 31, column 0
    rows[0, 2 * 1024 + 0 * 32 + 31] = 33  # blue, row 0, column 31
    for name in ("train", "test"):
        with open(folder / name, "wb") as handle:
            pickle.dump({b"data": rows, b"fine_labels": [7]}, handle, protocol=2)
    image = load_dataset("cifar100", DataRequest(root=tmp_path)).train.images[0]
    assert (image[0, 2, 5], image[1, 31, 0], image[2, 0, 31]) == (11, 22, 33)
    assert int(image.sum()) == 11 + 22 + 33


def test_cifar_missing_batch_says_what_and_where(tmp_path):
    write_cifar(tmp_path, cifar.CIFAR10)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    one_line_error("cifar10", DataRequest(root=tmp_path), "CIFAR-10 not found", "data_batch_3",
                   str(tmp_path / "cifar-10-batches-py"), cifar.HOME_PAGE, "--data-dir", "--download")


def corrupt_garbage(path: Path) -> None:
    path.write_bytes(b"not a pickle at all")


def corrupt_truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:500])


def corrupt_missing_key(path: Path) -> None:
    batch = pickle.loads(path.read_bytes(), encoding="bytes")
    path.write_bytes(pickle.dumps({b"data": batch[b"data"]}))


def corrupt_shape(path: Path) -> None:
    path.write_bytes(pickle.dumps({b"data": np.zeros((3, 1000), np.uint8), b"fine_labels": [0, 1, 2]}))


def corrupt_labels(path: Path) -> None:
    path.write_bytes(pickle.dumps({b"data": np.zeros((3, 3072), np.uint8), b"fine_labels": [0, 1, 100]}))


@pytest.mark.parametrize("corrupt", [corrupt_garbage, corrupt_truncated, corrupt_missing_key, corrupt_shape,
                                     corrupt_labels])
def test_cifar_corrupt_file_is_one_line_error(tmp_path, corrupt):
    write_cifar(tmp_path, cifar.CIFAR100)
    path = tmp_path / "cifar-100-python" / "train"
    corrupt(path)
    one_line_error("cifar100", DataRequest(root=tmp_path), "corrupt CIFAR-100 file", str(path), "--download")


@pytest.mark.parametrize("name", CIFAR_LAYOUTS)
def test_cifar_download_goes_through_torchvision(tmp_path, monkeypatch, name):
    layout, calls = CIFAR_LAYOUTS[name], []

    def fake_dataset(root, download):
        calls.append((root, download))
        write_cifar(Path(root), layout)

    monkeypatch.setattr(torchvision.datasets, layout.torchvision_class, fake_dataset)
    data = load_dataset(name, DataRequest(root=tmp_path, download=True))
    assert calls == [(str(tmp_path), True)]
    assert len(data.test) == IMAGES_PER_FILE


def test_cifar_download_failure_is_one_line_error(tmp_path, monkeypatch):
    def offline(root, download):
        raise URLError("no route to host")

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", offline)
    one_line_error("cifar100", DataRequest(root=tmp_path, download=True), "could not download CIFAR-100",
                   "no route to host", cifar.HOME_PAGE)


# -- SVHN: MATLAB v5 files -----------------------------------------------------------------------

def test_svhn_reads_mat_files_and_maps_10_to_0(tmp_path):
    x, y = write_svhn(tmp_path, "train", 12, seed=0)
    write_svhn(tmp_path, "test", 5, seed=1)
    data = load_dataset("svhn", DataRequest(root=tmp_path))
    assert data.train.images.shape == (12, 3, 32, 32) and data.train.images.dtype == torch.uint8
    assert data.train.images.is_contiguous()
    assert data.train.labels.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]
    assert len(data.test) == 5
    n, row, col = 4, 7, 30
    assert data.train.images[n, :, row, col].tolist() == x[row, col, :, n].tolist()
    assert (data.info.augment, data.info.num_classes) == ("crop", 10)


def test_svhn_train_plus_extra_concatenates_in_order(tmp_path):
    train_x, _ = write_svhn(tmp_path, "train", 4, seed=0)
    extra_x, _ = write_svhn(tmp_path, "extra", 3, seed=1)
    write_svhn(tmp_path, "test", 2, seed=2)
    data = load_dataset("svhn", DataRequest(root=tmp_path, train_split="train+extra"))
    expected = np.concatenate([train_x, extra_x], axis=3).transpose(3, 2, 0, 1)
    assert np.array_equal(data.train.images.numpy(), expected)
    assert data.train.labels.tolist() == [1, 2, 3, 4, 1, 2, 3]


def test_svhn_unknown_split_names_valid_ones(tmp_path):
    one_line_error("svhn", DataRequest(root=tmp_path, train_split="extra"), "'extra'", "train, train+extra")


def test_svhn_missing_extra_says_what_and_where(tmp_path):
    write_svhn(tmp_path, "train", 2, seed=0)
    write_svhn(tmp_path, "test", 2, seed=1)
    load_dataset("svhn", DataRequest(root=tmp_path))  # complete without extra
    one_line_error("svhn", DataRequest(root=tmp_path, train_split="train+extra"), "SVHN not found",
                   f"{tmp_path}/{{train,extra,test}}_32x32.mat", svhn.HOME_PAGE, "--download")


@pytest.mark.parametrize("content", [
    pytest.param(b"", id="empty"),
    pytest.param(b"MATLAB but not really" * 20, id="garbage"),
    pytest.param({"X": np.zeros((32, 32, 3, 2), np.uint8)}, id="no-y"),
    pytest.param({"X": np.zeros((2, 3, 32, 32), np.uint8), "y": np.ones((2, 1))}, id="wrong-layout"),
    pytest.param({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[1], [11]])}, id="bad-label"),
])
def test_svhn_corrupt_file_is_one_line_error(tmp_path, content):
    write_svhn(tmp_path, "test", 2, seed=1)
    path = tmp_path / "train_32x32.mat"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        scipy.io.savemat(path, content)
    one_line_error("svhn", DataRequest(root=tmp_path), "corrupt SVHN file", str(path), svhn.HOME_PAGE)


def test_svhn_truncated_file_is_one_line_error(tmp_path):
    write_svhn(tmp_path, "train", 3, seed=0)
    write_svhn(tmp_path, "test", 2, seed=1)
    path = tmp_path / "train_32x32.mat"
    path.write_bytes(path.read_bytes()[:4000])
    one_line_error("svhn", DataRequest(root=tmp_path), "corrupt SVHN file", str(path))


def test_svhn_download_fetches_each_needed_part(tmp_path, monkeypatch):
    splits = []

    def fake_svhn(root, split, download):
        splits.append(split)
        write_svhn(Path(root), split, 2, seed=len(splits))

    monkeypatch.setattr(torchvision.datasets, "SVHN", fake_svhn)
    data = load_dataset("svhn", DataRequest(root=tmp_path, download=True, train_split="train+extra"))
    assert splits == ["train", "extra", "test"]
    assert len(data.train) == 4


# -- ImageNet: class folders of JPEGs, or torchvision's archive layout ----------------------------

def test_imagenet_class_folders(tmp_path):
    write_class_folders(tmp_path, {"train": 3, "val": 2})
    data = load_dataset("imagenet", DataRequest(root=tmp_path))
    assert (len(data.train), len(data.test), data.info.num_classes) == (6, 4, 2)
    assert (data.info.mean, data.info.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    image, label = data.train[0]
    assert image.shape == (3, 224, 224) and image.dtype == torch.float32 and isinstance(label, int)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    image, label = data.test[3]
    assert image.shape == (3, 224, 224) and label == 1
    colour = torch.tensor(COLOURS[WNIDS[1]]) / 255  # not normalised: models normalise
    assert torch.allclose(image.mean(dim=(1, 2)), colour, atol=0.03)
    assert torch.equal(data.test[3][0], image)  # the test transform is deterministic


def test_imagenet_missing_says_how_to_get_it(tmp_path):
    one_line_error("imagenet", DataRequest(root=tmp_path, download=True), "ImageNet not found",
                   f"{tmp_path}/{{train,val}}/<wnid>/*.JPEG", "ILSVRC2012_img_train.tar",
                   "ILSVRC2012_devkit_t12.tar.gz", "image-net.org", "cannot be fetched automatically")


def test_imagenet_empty_class_folder_is_one_line_error(tmp_path):
    write_class_folders(tmp_path, {"train": 1, "val": 1})
    (tmp_path / "val" / "n01999999").mkdir()
    one_line_error("imagenet", DataRequest(root=tmp_path), f"ImageNet in {tmp_path} is incomplete", "n01999999")


def test_imagenet_empty_split_folder_is_one_line_error(tmp_path):
    write_class_folders(tmp_path, {"train": 1})
    (tmp_path / "val").mkdir()
    one_line_error("imagenet", DataRequest(root=tmp_path), "is incomplete", str(tmp_path / "val"), "image-net.org")


def test_imagenet_train_and_val_classes_must_agree(tmp_path):
    write_class_folders(tmp_path, {"train": 1, "val": 1})
    extra = tmp_path / "train" / "n01484850"
    extra.mkdir()
    Image.new("RGB", (8, 8)).save(extra / "x.JPEG")
    one_line_error("imagenet", DataRequest(root=tmp_path), "different classes", "3 vs 2")


def test_imagenet_extracted_archive_layout_uses_torchvision_imagenet(tmp_path):
    """What torchvision's ImageNet leaves after extracting the archives: class folders + meta.bin."""
    write_class_folders(tmp_path, {"train": 2, "val": 1})
    wnid_to_classes = {WNIDS[0]: ("tench", "Tinca tinca"), WNIDS[1]: ("goldfish", "Carassius auratus")}
    torch.save((wnid_to_classes, list(WNIDS)), tmp_path / "meta.bin")
    data = load_dataset("imagenet", DataRequest(root=tmp_path))
    assert isinstance(data.train, torchvision.datasets.ImageNet)
    assert data.train.wnids == list(WNIDS) and data.test.classes[0] == ("tench", "Tinca tinca")
    assert data.test[1][0].shape == (3, 224, 224) and data.test[1][1] == 1


def test_imagenet_archives_are_handed_to_torchvision(tmp_path, monkeypatch):
    """torchvision's archive parsing checks md5 sums of the real archives, so it is replaced here."""
    calls = []

    class FakeImageNet:
        classes = list(WNIDS)

        def __init__(self, root, split, transform):
            calls.append((root, split, transform))

    for name in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz"):
        (tmp_path / name).touch()
    monkeypatch.setattr(torchvision.datasets, "ImageNet", FakeImageNet)
    data = load_dataset("imagenet", DataRequest(root=tmp_path))
    steps = [(root, split, [type(step).__name__ for step in transform.transforms]) for root, split, transform in calls]
    assert steps == [(str(tmp_path), "train", ["RandomResizedCrop", "RandomHorizontalFlip", "ToImage", "ToDtype"]),
                     (str(tmp_path), "val", ["Resize", "CenterCrop", "ToImage", "ToDtype"])]
    assert isinstance(data.train, FakeImageNet) and data.info.num_classes == 2


def test_imagenet_incomplete_archives_name_what_is_missing(tmp_path):
    (tmp_path / "ILSVRC2012_img_train.tar").touch()
    one_line_error("imagenet", DataRequest(root=tmp_path), "ImageNet archives incomplete",
                   "missing ILSVRC2012_devkit_t12.tar.gz, ILSVRC2012_img_val.tar;", "image-net.org")


def test_imagenet_corrupt_archives_are_one_line_error(tmp_path):
    """Real torchvision parsing: empty archives fail its md5 check before any extraction."""
    for name in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz"):
        (tmp_path / name).touch()
    one_line_error("imagenet", DataRequest(root=tmp_path), "cannot read the ImageNet archives",
                   "ILSVRC2012_devkit_t12.tar.gz")


# -- shared behaviour ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn", "imagenet"])
def test_missing_data_is_one_line_error_at_default_location(tmp_path, name):
    """Without --data-dir a dataset is looked for (and downloaded to) under --cache-dir alone."""
    one_line_error(name, DataRequest(cache_dir=tmp_path / "cache"), f"{tmp_path}/cache/data/{name}", "--data-dir")


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "imagenet"])
def test_only_the_train_split_exists(tmp_path, name):
    one_line_error(name, DataRequest(root=tmp_path, train_split="train+extra"), "'train+extra'", "expected: train")
