"""A validation split carved from a dataset's training split: what epochs and settings are chosen on,
so the test set gives the reported number only.

The split is stratified (each class gives its share of the training split, rounded by largest
remainder so the sizes add up exactly) and fixed by the dataset and its size alone, never by a run's
seed: every seed and every loss of a comparison trains on the same images and is selected on the
same held-out ones. Its images are read as the test images are (no augmentation).
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import Tensor
from torch.utils.data import Subset

from bench.data.base import ImageTensors, LoadedDataset, Split
from bench.seeding import generator
from registry import ConfigError


def split_labels(split: Split) -> Tensor:
    """Every label of a split: in memory, or a torchvision dataset's ``targets``."""
    if isinstance(split, ImageTensors):
        return split.labels
    return torch.as_tensor(split.targets, dtype=torch.long)


def stratified_indices(labels: Tensor, size: int, dataset: str) -> Tensor:
    """``size`` indices of ``labels``, each class in proportion to its count, the same for a given dataset."""
    if not 0 < size < labels.shape[0]:
        raise ConfigError(f"a validation split of {dataset} must hold between 1 and {labels.shape[0] - 1} "
                          f"of its {labels.shape[0]} training images; got {size}")
    counts = torch.bincount(labels)
    exact = counts.double() * size / labels.shape[0]
    quotas = exact.floor().long()
    remainders = (exact - quotas).argsort(descending=True, stable=True)
    quotas[remainders[:size - int(quotas.sum())]] += 1
    order = torch.randperm(labels.shape[0], generator=generator("cpu", 0, "validation", dataset))
    by_class = order[labels[order].argsort(stable=True)]  # shuffled within each class, classes in order
    starts = torch.cumsum(counts, 0) - counts
    return torch.cat([by_class[start:start + quota] for start, quota in zip(starts.tolist(), quotas.tolist())])


def carve_validation(data: LoadedDataset, size: int) -> LoadedDataset:
    """``data`` with ``size`` training images moved to ``validation`` (stratified, fixed per dataset)."""
    labels = split_labels(data.train)
    held_out = stratified_indices(labels, size, data.info.name)
    kept = torch.ones(labels.shape[0], dtype=torch.bool)
    kept[held_out] = False
    rest = kept.nonzero().squeeze(1)
    return replace(data, train=_subset(data.train, rest), validation=_subset(_as_evaluated(data), held_out))


def _as_evaluated(data: LoadedDataset) -> Split:
    """The training split read as the test split is: the test split's transform on the training images."""
    if isinstance(data.train, ImageTensors):
        return data.train  # in-memory splits are augmented by the stream, only when it trains
    evaluated = copy.copy(data.train)  # shares the file list; only the transform differs
    evaluated.transform = data.test.transform
    return evaluated


def _subset(split: Split, indices: Tensor) -> Split:
    if isinstance(split, ImageTensors):
        return ImageTensors(split.images[indices], split.labels[indices])
    return Subset(split, indices.tolist())


def training_subset(data: LoadedDataset, size: int) -> LoadedDataset:
    """``data`` whose students train on ``size`` of its training images (stratified, fixed per dataset, like the
    validation split): a tuning trial's budget. The whole split when ``size`` covers it."""
    labels = split_labels(data.train)
    if size >= labels.shape[0]:
        return data
    kept = stratified_indices(labels, size, f"{data.info.name} training subset").sort().values
    return replace(data, train=_subset(data.train, kept))
