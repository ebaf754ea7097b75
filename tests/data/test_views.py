"""The strong view: each operation against the PIL call the MLKD authors make; a view is a pure function of its seed."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from bench.data.base import DatasetInfo
from bench.data.views import OPERATIONS, apply_operation, cutout, strong_view

# Jin-Ying/Multi-Level-Logit-Distillation mdistiller/dataset/cifar100.py: augment_list() and each operation's PIL call
AUTHORS = {
    "autocontrast": ((0, 1), lambda img, v: ImageOps.autocontrast(img)),
    "brightness": ((0.05, 0.95), lambda img, v: ImageEnhance.Brightness(img).enhance(v)),
    "color": ((0.05, 0.95), lambda img, v: ImageEnhance.Color(img).enhance(v)),
    "contrast": ((0.05, 0.95), lambda img, v: ImageEnhance.Contrast(img).enhance(v)),
    "equalize": ((0, 1), lambda img, v: ImageOps.equalize(img)),
    "identity": ((0, 1), lambda img, v: img),
    "posterize": ((4, 8), lambda img, v: ImageOps.posterize(img, max(1, int(v)))),
    "rotate": ((-30, 30), lambda img, v: img.rotate(v)),
    "sharpness": ((0.05, 0.95), lambda img, v: ImageEnhance.Sharpness(img).enhance(v)),
    "shear_x": ((-0.3, 0.3), lambda img, v: img.transform(img.size, Image.AFFINE, (1, v, 0, 0, 1, 0))),
    "shear_y": ((-0.3, 0.3), lambda img, v: img.transform(img.size, Image.AFFINE, (1, 0, 0, v, 1, 0))),
    "solarize": ((0, 256), lambda img, v: ImageOps.solarize(img, v)),
    "translate_x": ((-0.3, 0.3), lambda img, v: img.transform(img.size, Image.AFFINE, (1, 0, v * img.width, 0, 1, 0))),
    "translate_y": ((-0.3, 0.3), lambda img, v: img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, v * img.height))),
}
INFO = DatasetInfo("tiny", 5, 3, 32, (0.5,) * 3, (0.25,) * 3, augment="crop-flip")


def image(seed: int = 0, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def as_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def test_the_operations_are_the_authors_fourteen_with_their_ranges():
    assert [(name, (low, high)) for name, low, high in OPERATIONS] == [(n, r) for n, (r, _) in AUTHORS.items()]


@pytest.mark.parametrize("name", AUTHORS)
@pytest.mark.parametrize("level", [0.1, 0.5, 0.93])
def test_each_operation_matches_the_authors_pil_call(name, level):
    """Within one grey level (torchvision's enhance ops round once where PIL rounds twice)."""
    (low, high), pil = AUTHORS[name]
    value = low + (high - low) * level
    array = image()
    expected = np.asarray(pil(Image.fromarray(array), value)).astype(int)
    got = apply_operation(as_tensor(array), name, value).permute(1, 2, 0).numpy().astype(int)
    assert np.abs(expected - got).max() <= 1


def test_solarize_above_255_leaves_the_image_alone():
    array = image()
    assert torch.equal(apply_operation(as_tensor(array), "solarize", 255.5), as_tensor(array))


@pytest.mark.parametrize(("side", "centre"), [(9.7, (3.2, 20.9)), (15.99, (30.5, 1.0)), (4.0, (10.0, 10.0)),
                                              (0.0, (5, 5))])
def test_cutout_is_the_authors_box(side, centre):
    """CutoutAbs: x0 = int(max(0, cx - v / 2)), x1 = min(w, x0 + v), ImageDraw.rectangle filled (125, 123, 114)."""
    array = image()
    expected = Image.fromarray(array)
    if side > 0:
        x0, y0 = int(max(0, centre[0] - side / 2)), int(max(0, centre[1] - side / 2))
        ImageDraw.Draw(expected).rectangle((x0, y0, min(32, x0 + side), min(32, y0 + side)), (125, 123, 114))
    got = cutout(as_tensor(array), side, centre).permute(1, 2, 0).numpy()
    assert np.array_equal(np.asarray(expected), got)


def batch(channels: int = 3) -> torch.Tensor:
    return torch.randint(0, 256, (6, channels, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def view(images: torch.Tensor, seed: int, info: DatasetInfo = INFO) -> torch.Tensor:
    return strong_view(images, info, torch.Generator().manual_seed(seed))


def test_a_view_is_a_pure_function_of_its_seed():
    images = batch()
    first, again, other = view(images, 1), view(images, 1), view(images, 2)
    assert first.dtype == torch.uint8 and first.shape == images.shape
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_grey_images_get_a_view_too():
    grey = DatasetInfo("grey", 5, 1, 32, (0.5,), (0.25,), augment="crop")
    images = batch(channels=1)
    assert view(images, 3, grey).shape == images.shape
