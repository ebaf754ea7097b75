"""A tiny generated dataset for tests and smoke runs: learnable in a few steps, no files needed.

Each class is a fixed random template; examples are the template plus noise, so accuracy rises
quickly and a broken training loop shows up as chance-level accuracy.
"""

from __future__ import annotations

import torch

from bench.data.base import DataRequest, DatasetInfo, ImageTensors, LoadedDataset, register_dataset
from registry import ConfigError

INFO = DatasetInfo(name="synthetic", num_classes=4, in_chans=3, image_size=16,
                   mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), augment="crop-flip", crop_padding=2)
TRAIN_SIZE, TEST_SIZE = 320, 128  # students train on 256 once the recipe carves its 64 validation images


def _examples(templates: torch.Tensor, count: int, gen: torch.Generator) -> ImageTensors:
    labels = torch.arange(count) % templates.shape[0]
    noise = torch.randn(count, *templates.shape[1:], generator=gen) * 40
    images = (templates[labels] + noise).clamp(0, 255).to(torch.uint8)
    return ImageTensors(images, labels)


@register_dataset("synthetic")
def load_synthetic(request: DataRequest) -> LoadedDataset:
    if request.train_split not in (None, "train"):
        raise ConfigError(f"synthetic has no train split '{request.train_split}'; expected: train")
    gen = torch.Generator().manual_seed(0)
    shape = (INFO.num_classes, INFO.in_chans, INFO.image_size, INFO.image_size)
    templates = torch.rand(shape, generator=gen) * 255
    return LoadedDataset(INFO, _examples(templates, TRAIN_SIZE, gen), _examples(templates, TEST_SIZE, gen))
