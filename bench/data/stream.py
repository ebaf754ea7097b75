"""One epoch of batches ``(images, labels, indices)`` on the training device.

The order of examples is a pure function of (seed, epoch), so every student of a comparison and
every resumed run sees the same batches. In-memory splits stay on the device as uint8 and are
augmented there (``ResidentStream``); other splits go through a ``DataLoader`` (``LoaderStream``).
Images come out as uint8 or as floats in [0, 1]; models normalise them (``bench.models.network``).
A resident training stream can add a second, strongly augmented view of each batch
(``epoch(..., strong_view=True)``, ``bench.data.views``): MLKD's recipe, ``bench run --strong-view``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from bench.data.augment import augment
from bench.data.base import DatasetInfo, ImageTensors, Split
from bench.data.transforms import as_loader_split
from bench.data.views import strong_view as strong_view_of
from bench.seeding import derive_seed, generator
from registry import ConfigError

DATA_PATHS = ("resident", "loader")

BatchTriple = tuple[Tensor, Tensor, Tensor]  # (images, labels, indices); a strong view, when asked, comes fourth


def batches_per_epoch(examples: int, batch_size: int, train: bool = True) -> int:
    """Batches of one pass: training drops the ragged last batch, evaluation keeps it."""
    return examples // batch_size if train else -(-examples // batch_size)


@dataclass(frozen=True)
class Shard:
    """The part of every batch this process takes: rank ``rank`` of ``world`` takes the rank-th of
    ``world`` consecutive slices (equal when the batch splits evenly), so the ranks together see
    exactly the batches of one process."""

    rank: int = 0
    world: int = 1

    def part(self, batch: int) -> slice:
        return slice(self.rank * batch // self.world, (self.rank + 1) * batch // self.world)


def epoch_order(num_examples: int, seed: int, epoch: int) -> Tensor:
    """The shuffled order of one training epoch (on the CPU, identical on every machine)."""
    return torch.randperm(num_examples, generator=generator("cpu", seed, "order", epoch))


class ResidentStream:
    """Batches of an in-memory split held on ``device``, augmented with batched tensor ops."""

    def __init__(self, split: ImageTensors, info: DatasetInfo, batch_size: int, device: torch.device,
                 *, train: bool, seed: int, shard: Shard = Shard()):
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.info, self.batch_size, self.device = info, batch_size, device
        self.train, self.seed, self.shard = train, seed, shard

    @property
    def num_examples(self) -> int:
        return self.images.shape[0]

    def __len__(self) -> int:
        return batches_per_epoch(self.num_examples, self.batch_size, self.train)

    def epoch(self, epoch: int, strong_view: bool = False) -> Iterator[BatchTriple]:
        """One pass; with ``strong_view`` each batch also carries its strong view, drawn from its own
        stream, so the first view is the same with or without it."""
        if strong_view and not self.train:
            raise ValueError("a strong view is a training view; the evaluation stream has none")
        if self.train:
            order = epoch_order(self.num_examples, self.seed, epoch).to(self.device)
            gen = generator(self.device, self.seed, "augment", epoch)
            strong_gen = generator("cpu", self.seed, "strong-view", epoch)
        else:
            order = torch.arange(self.num_examples, device=self.device)
        for step in range(len(self)):
            idx = order[step * self.batch_size:(step + 1) * self.batch_size]
            raw = self.images[idx]
            # the whole global batch is augmented: the same random draws for any number of processes
            images = augment(raw, self.info, gen) if self.train else raw
            part = self.shard.part(idx.shape[0])
            batch = images[part], self.labels[idx[part]], idx[part]
            yield (*batch, strong_view_of(raw, self.info, strong_gen)[part]) if strong_view else batch


class _Indexed(Dataset):
    """A dataset whose items also carry their index (CRD's memory bank needs it)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, label = self.dataset[index]
        return image, label, index


class LoaderStream:
    """Batches of a ``Dataset`` through worker processes; the dataset's transform augments."""

    def __init__(self, split: Dataset, batch_size: int, device: torch.device, *, train: bool, seed: int,
                 workers: int, shard: Shard = Shard()):
        self.split, self.batch_size, self.device = split, batch_size, device
        self.train, self.seed, self.workers, self.shard = train, seed, workers, shard

    @property
    def num_examples(self) -> int:
        return len(self.split)

    def __len__(self) -> int:
        return batches_per_epoch(self.num_examples, self.batch_size, self.train)

    def epoch(self, epoch: int, strong_view: bool = False) -> Iterator[BatchTriple]:
        if strong_view:  # refused in the plan (bench.run.runner); said here too for direct callers
            raise ConfigError("a strong view needs the resident data path (an in-memory dataset, --data-path resident)")
        order = epoch_order(self.num_examples, self.seed, epoch) if self.train else torch.arange(self.num_examples)
        batches = [batch[self.shard.part(len(batch))].tolist() for batch in order.split(self.batch_size)
                   if not self.train or len(batch) == self.batch_size]  # train drops the ragged last batch
        if self.workers == 0:  # transforms then draw from the global generator in this process
            torch.manual_seed(derive_seed(self.seed, "augment", epoch))
        loader = DataLoader(
            _Indexed(self.split), batch_sampler=batches,
            num_workers=self.workers, pin_memory=self.device.type == "cuda", persistent_workers=False,
            generator=torch.Generator().manual_seed(derive_seed(self.seed, "augment", epoch)),
        )
        for images, labels, idx in loader:
            yield (images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True),
                   idx.to(self.device, non_blocking=True))


@dataclass(frozen=True)
class Loading:
    """How batches are made: ``resident`` (in-memory splits on the device) or ``loader`` (DataLoader)."""

    path: str = "resident"
    workers: int = 0

    def __post_init__(self):
        if self.path not in DATA_PATHS:
            raise ConfigError(f"unknown data path '{self.path}'; expected one of: {', '.join(DATA_PATHS)}")


def make_stream(split: Split, info: DatasetInfo, batch_size: int, device: torch.device, *, train: bool,
                seed: int, loading: Loading = Loading(), shard: Shard = Shard()) -> ResidentStream | LoaderStream:
    """The fast resident path for in-memory splits, the DataLoader path for everything else (or on request)."""
    if isinstance(split, ImageTensors):
        if loading.path == "resident":
            return ResidentStream(split, info, batch_size, device, train=train, seed=seed, shard=shard)
        split = as_loader_split(split, info, train)
    return LoaderStream(split, batch_size, device, train=train, seed=seed, workers=loading.workers, shard=shard)
