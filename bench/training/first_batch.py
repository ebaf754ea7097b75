"""A run's first batch, tried on every student before any step: a loss that breaks the contract
(``losses.contract``: a scalar or a dict of scalars, finite, a gradient that reaches the student) is
refused alone, and the cohort's other students train exactly as they would have without it.

Nothing of the try lasts: each student's network and loss get their state back (what a checkpoint
holds, BatchNorm statistics and memory banks included) and the random generators theirs.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch

from bench.training.cohort import Acceleration, Student, shared_inputs, visible
from bench.data.stream import LoaderStream, ResidentStream
from bench.models.network import Network
from losses.base import MODEL_NEEDS, Outputs
from losses.contract import LossContractError, finite_problem, gradient_problem, named_tensors


def refuse_broken_losses(students: Sequence[Student], teacher: Network | None, train: ResidentStream | LoaderStream,
                         accel: Acceleration, strong_view: bool) -> None:
    """Set ``refused`` on each unfinished student whose loss breaks the contract on the first batch it would
    train on (rank 0's verdict, so every process of a run keeps the same students)."""
    students = [s for s in students if not s.done]
    if not students:
        return
    epoch = min(s.epochs_done for s in students)
    cuda = [train.device] if train.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        images, labels, indices, *strong = next(iter(train.epoch(epoch, strong_view)))
        needs = frozenset().union(*(s.loss.needs & MODEL_NEEDS for s in students))
        images, strong, shared = shared_inputs(teacher, needs, images, strong[0] if strong else None, accel)
        verdicts = [_problem(s, images, labels, indices, shared, strong, epoch, accel) for s in students]
    for student, verdict in zip(students, students[0].world.broadcast(verdicts)):
        student.refused = verdict


def _problem(student: Student, images, labels, indices, shared: Outputs, strong, epoch: int,
             accel: Acceleration) -> str | None:
    state = copy.deepcopy({"network": student.network.state_dict(), "loss": student.loss.state_dict()})
    student.network.train()  # as in training: BatchNorm on batch statistics (and moving its running ones)
    student.loss.train()
    try:
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=accel.amp):
            own = student.network.extract(images, student.loss.needs)
            if strong is not None:
                own.strong = student.network.extract(strong, student.loss.needs)
        _, distillation = student.objective(own, shared, labels, indices, epoch, 0, accel)
        problem = finite_problem(distillation)
        if problem is None and student.weight and student.loss.needs & MODEL_NEEDS:
            seen = visible(own, student.loss.needs)
            outputs = named_tensors(seen, "student") + (named_tensors(seen.strong, "strong") if seen.strong else [])
            problem = gradient_problem(distillation, [t for _, t in outputs])
        return problem
    except LossContractError as exc:
        return str(exc)
    finally:
        student.network.load_state_dict(state["network"])
        student.loss.load_state_dict(state["loss"])
        student._start_epoch_sums()
