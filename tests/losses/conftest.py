"""Shared builders for the loss tests: probed shapes, model outputs and batches, all synthetic."""

from types import SimpleNamespace

import pytest
import torch

from losses import Batch, LossContext, ModelShapes, Outputs

# A cross-architecture pair: different channels, resolutions, embedding widths and stage counts.
STUDENT = ModelShapes(features=((8, 16, 16), (16, 16, 16), (32, 8, 8), (64, 4, 4)), embedding=64, num_classes=10)
TEACHER = ModelShapes(features=((4, 32, 32), (12, 16, 16), (24, 8, 8), (48, 4, 4), (96, 2, 2)), embedding=96,
                      num_classes=10)
NUM_TRAIN = 40


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy machine threads spin-wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def shapes():
    """The cross-architecture pair's probed shapes: ``shapes.student``, ``shapes.teacher``."""
    return SimpleNamespace(student=STUDENT, teacher=TEACHER)


@pytest.fixture
def context():
    def make(student: ModelShapes = STUDENT, teacher: ModelShapes = TEACHER, num_train: int = NUM_TRAIN):
        return LossContext(student, teacher, num_train)

    return make


@pytest.fixture
def outputs():
    """Random (or constant) outputs of every kind for ``shapes``; ``grad`` marks them as student tensors."""

    def make(shapes: ModelShapes, batch: int, *, grad: bool = False, constant: bool = False, seed: int = 0,
             dtype: torch.dtype = torch.float32) -> Outputs:
        g = torch.Generator().manual_seed(seed)

        def tensor(*shape):
            t = torch.full(shape, 0.5) if constant else torch.randn(*shape, generator=g)
            return t.to(dtype).requires_grad_(grad)

        return Outputs(
            logits=tensor(batch, shapes.num_classes),
            features=tuple(tensor(batch, *s) for s in shapes.features),
            embedding=tensor(batch, shapes.embedding),
            feature_map=tensor(batch, *shapes.feature_map) if shapes.feature_map else None,
        )

    return make


@pytest.fixture
def batch():
    def make(size: int, *, epoch: int = 0, num_classes: int = 10, num_train: int = NUM_TRAIN, seed: int = 0) -> Batch:
        g = torch.Generator().manual_seed(seed)
        labels = torch.randint(num_classes, (size,), generator=g)
        indices = torch.randperm(num_train, generator=g)[:size]
        return Batch(labels, indices, epoch, torch.Generator().manual_seed(seed + 1))

    return make
