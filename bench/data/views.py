"""A second, strongly augmented view of a training batch (MLKD, Jin et al. CVPR 2023).

The authors' strong view (Jin-Ying/Multi-Level-Logit-Distillation, mdistiller/dataset/cifar100.py
``get_cifar100_train_transform_strong``) is the weak view's crop and flip, drawn afresh, then
FixMatch's RandAugment: two operations drawn with replacement from fourteen, each at a magnitude
uniform in its range, then a Cutout of side uniform in [0, 0.5] of the width filled with
(125, 123, 114). Here every draw comes from one ``torch.Generator`` (so a view is a pure function of
the seed) and each operation is torchvision's tensor version of the PIL operation the authors call.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bench.data.augment import augment
from bench.data.base import DatasetInfo

# (operation, low, high): the authors' ``augment_list``, in their order
OPERATIONS: tuple[tuple[str, float, float], ...] = (
    ("autocontrast", 0, 1), ("brightness", 0.05, 0.95), ("color", 0.05, 0.95), ("contrast", 0.05, 0.95),
    ("equalize", 0, 1), ("identity", 0, 1), ("posterize", 4, 8), ("rotate", -30, 30), ("sharpness", 0.05, 0.95),
    ("shear_x", -0.3, 0.3), ("shear_y", -0.3, 0.3), ("solarize", 0, 256), ("translate_x", -0.3, 0.3),
    ("translate_y", -0.3, 0.3),
)
OPERATIONS_PER_IMAGE = 2  # RandAugment(2, 10); the authors' magnitude 10 is unused (magnitudes are drawn)
CUTOUT_MAX = 0.5  # of the width
CUTOUT_FILL = (125, 123, 114)  # a grey image takes the first value


def pil_affine(image: Tensor, coefficients: tuple[float, ...]) -> Tensor:
    """PIL's ``Image.transform(size, AFFINE, (a, b, c, d, e, f))`` with nearest sampling and black fill:
    output pixel (x, y) reads the input at ``(a x + b y + c, d x + e y + f)``, taken at pixel centres
    and truncated, the origin at the top-left corner."""
    a, b, c, d, e, f = coefficients
    _, h, w = image.shape
    y, x = torch.meshgrid(torch.arange(h, device=image.device) + 0.5, torch.arange(w, device=image.device) + 0.5,
                          indexing="ij")
    source_x = torch.floor(a * x + b * y + c).long()
    source_y = torch.floor(d * x + e * y + f).long()
    inside = (source_x >= 0) & (source_x < w) & (source_y >= 0) & (source_y < h)
    picked = image[:, source_y.clamp(0, h - 1), source_x.clamp(0, w - 1)]
    return torch.where(inside, picked, torch.zeros((), dtype=image.dtype, device=image.device))


def apply_operation(image: Tensor, name: str, value: float) -> Tensor:
    """One of ``OPERATIONS`` on a uint8 [C, H, W] image at magnitude ``value``."""
    from torchvision.transforms.v2 import functional as TF  # imported on use, as in bench.data.transforms

    _, h, w = image.shape
    if name in ("shear_x", "shear_y", "translate_x", "translate_y"):
        coefficients = {"shear_x": (1, value, 0, 0, 1, 0), "shear_y": (1, 0, 0, value, 1, 0),
                        "translate_x": (1, 0, value * w, 0, 1, 0), "translate_y": (1, 0, 0, 0, 1, value * h)}[name]
        return pil_affine(image, coefficients)
    if name == "solarize":  # PIL inverts pixels >= the threshold; above 255 none is
        return image if value > 255 else TF.solarize(image, value)
    operations = {
        "autocontrast": TF.autocontrast, "equalize": TF.equalize, "identity": lambda img: img,
        "brightness": lambda img: TF.adjust_brightness(img, value),
        "color": lambda img: TF.adjust_saturation(img, value),
        "contrast": lambda img: TF.adjust_contrast(img, value),
        "sharpness": lambda img: TF.adjust_sharpness(img, value),
        "posterize": lambda img: TF.posterize(img, max(1, int(value))),
        "rotate": lambda img: TF.rotate(img, value),  # about the centre, nearest, black fill: PIL's Image.rotate
    }
    return operations[name](image)


def cutout(image: Tensor, side: float, centre: tuple[float, float]) -> Tensor:
    """The authors' ``CutoutAbs``: a square of ``side`` pixels from ``centre - side / 2`` (truncated, clipped)."""
    if side <= 0:
        return image
    _, h, w = image.shape
    x0, y0 = int(max(0.0, centre[0] - side / 2)), int(max(0.0, centre[1] - side / 2))
    x1, y1 = min(w, x0 + side), min(h, y0 + side)
    out = image.clone()
    colour = CUTOUT_FILL if image.shape[0] == len(CUTOUT_FILL) else CUTOUT_FILL[:1] * image.shape[0]
    fill = torch.tensor(colour, dtype=image.dtype, device=image.device)
    out[:, y0:math.floor(y1) + 1, x0:math.floor(x1) + 1] = fill[:, None, None]  # PIL's rectangle includes its end
    return out


def strong_view(images: Tensor, info: DatasetInfo, generator: torch.Generator) -> Tensor:
    """The strong view of a uint8 batch [N, C, H, W]: the dataset's crop and flip, then RandAugment and Cutout.

    ``generator`` is a CPU generator: the per-image draws are made there in one go, so a view
    depends only on its seed, whatever device the images are on.
    """
    n, _, h, w = images.shape
    choices = torch.randint(len(OPERATIONS), (n, OPERATIONS_PER_IMAGE), generator=generator)
    levels = torch.rand(n, OPERATIONS_PER_IMAGE, generator=generator)
    sides = torch.rand(n, generator=generator) * CUTOUT_MAX * w
    centres = torch.rand(n, 2, generator=generator) * torch.tensor([w, h])
    images = augment(images, info, torch.Generator(images.device).manual_seed(
        int(torch.randint(2**62, (), generator=generator))))
    views = []
    for i, image in enumerate(images):
        for choice, level in zip(choices[i].tolist(), levels[i].tolist()):
            name, low, high = OPERATIONS[choice]
            image = apply_operation(image, name, low + (high - low) * level)
        views.append(cutout(image, float(sides[i]), (float(centres[i, 0]), float(centres[i, 1]))))
    return torch.stack(views)
