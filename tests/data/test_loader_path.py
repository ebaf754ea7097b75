"""The DataLoader path (torchvision, per image) draws the same augmentations as the batched path.

One image whose pixels are all distinct and non-zero is augmented many times by each path. Every
output is identified as one (crop offset, flip) outcome by comparison with all possible outcomes,
computed here by slicing the zero-padded image; the outcome counts must be uniform and alike for
both paths, and the mean images must match the exact expectation (the mean of all outcomes).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from bench.data.augment import augment
from bench.data.base import DatasetInfo, ImageTensors
from bench.data.stream import make_stream
from bench.data.transforms import as_loader_split
from registry import ConfigError

SIZE, PADDING, DRAWS = 8, 4, 6000
IMAGE = torch.arange(1, 3 * SIZE * SIZE + 1, dtype=torch.uint8).reshape(3, SIZE, SIZE)


def info_for(kind: str) -> DatasetInfo:
    return DatasetInfo(name="probe", num_classes=2, in_chans=3, image_size=SIZE, mean=(0.5,) * 3,
                       std=(0.25,) * 3, augment=kind, crop_padding=PADDING)


def outcomes(kind: str) -> torch.Tensor:
    """Every image the augmentation can produce, each exactly once: [K, C, H, W]."""
    padded = F.pad(IMAGE, (PADDING,) * 4)
    crops = [padded[:, dy:dy + SIZE, dx:dx + SIZE] for dy in range(2 * PADDING + 1) for dx in range(2 * PADDING + 1)]
    return torch.stack(crops + [crop.flip(-1) for crop in crops] if kind == "crop-flip" else crops)


def outcome_counts(images: torch.Tensor, possible: torch.Tensor) -> np.ndarray:
    """How often each possible outcome occurs; an image that is no possible outcome fails the test."""
    index = {image.numpy().tobytes(): k for k, image in enumerate(possible)}
    return np.bincount([index[image.numpy().tobytes()] for image in images], minlength=len(possible))


def batched_draws(kind: str) -> torch.Tensor:
    images = IMAGE.expand(DRAWS, -1, -1, -1).contiguous()
    return augment(images, info_for(kind), torch.Generator().manual_seed(1))


def loader_draws(kind: str) -> torch.Tensor:
    split = as_loader_split(ImageTensors(IMAGE[None], torch.tensor([1])), info_for(kind), train=True)
    torch.manual_seed(2)
    floats = torch.stack([split[0][0] for _ in range(DRAWS)])
    assert floats.dtype == torch.float32 and 0 <= floats.min() and floats.max() <= 1
    return (floats * 255).round().to(torch.uint8)


@pytest.mark.parametrize("kind", ["crop-flip", "crop"])
def test_both_paths_draw_crops_and_flips_uniformly(kind):
    possible = outcomes(kind)
    batched = outcome_counts(batched_draws(kind), possible)
    loader = outcome_counts(loader_draws(kind), possible)
    assert stats.chisquare(batched).pvalue > 1e-3
    assert stats.chisquare(loader).pvalue > 1e-3
    assert stats.chi2_contingency(np.stack([batched, loader])).pvalue > 1e-3


@pytest.mark.parametrize("kind", ["crop-flip", "crop"])
def test_both_paths_have_the_expected_mean_image(kind):
    expected = outcomes(kind).float().mean(0) / 255
    for draws in (batched_draws(kind), loader_draws(kind)):
        assert (draws.float().mean(0) / 255 - expected).abs().max() < 0.03


def test_test_split_and_no_augmentation_are_exact():
    split = ImageTensors(torch.randint(0, 256, (4, 3, SIZE, SIZE), dtype=torch.uint8), torch.arange(4))
    for dataset in (as_loader_split(split, info_for("crop-flip"), train=False),
                    as_loader_split(split, info_for("none"), train=True)):
        image, label = dataset[2]
        assert torch.allclose(image, split.images[2].float() / 255, rtol=0, atol=1e-6) and label == 2


def test_unknown_augmentation_is_config_error():
    split = ImageTensors(IMAGE[None], torch.tensor([0]))
    with pytest.raises(ConfigError, match="expected one of: crop-flip, crop, none"):
        as_loader_split(split, info_for("cutout"), train=True)


def test_loader_split_streams_float_batches():
    split = ImageTensors(torch.randint(0, 256, (10, 3, SIZE, SIZE), dtype=torch.uint8), torch.arange(10) % 2)
    stream = make_stream(as_loader_split(split, info_for("crop-flip"), train=True), info_for("crop-flip"),
                         batch_size=4, device=torch.device("cpu"), train=True, seed=0)
    batches = list(stream.epoch(0))
    assert len(batches) == 2
    images, labels, indices = batches[0]
    assert images.shape == (4, 3, SIZE, SIZE) and images.dtype == torch.float32
    assert torch.equal(labels, split.labels[indices])
