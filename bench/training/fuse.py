"""``--fuse``: the students of a cohort that share an architecture run their networks' forward and
backward as one stacked computation (horizontal fusion, as in HFTA: Wang et al., MLSys 2021).

How: ``torch.func.vmap`` of ``functional_call`` over the members' parameters and BatchNorm buffers,
stacked along a new leading dimension. Why not HFTA's grouped-convolution rewrite: vmap fuses any
timm architecture without rewriting its layers, and it already lowers a convolution with stacked
weights to one grouped convolution, HFTA's kernel. BatchNorm under vmap computes each member's
batch statistics over that member's slice only and updates each member's own running statistics
in place (the buffers are stacked too); ``tests/test_fuse.py`` checks both against unfused runs.
The stacked forward runs a copy of the architecture whose global average pools are means over H and W:
vmap has no batching rule for adaptive average pooling of channels-last maps and would loop over members.

What stays per student: its loss, which receives the member's slice of the stacked outputs and knows
nothing of fusion; the loss's trainable parts; its optimizer and that optimizer's state; its random
streams; its checkpoint. During an epoch a member's network tensors are views into the stacked
tensors, so its own optimizer updates the stacked weights in place and nothing is copied per step;
when the epoch ends every network gets its original storage back (with the trained values), so
evaluation, ``state_dict`` and checkpoints see one plain network, with or without ``--fuse``.
The optimizer step stays one per student: it is a single fused kernel per student on CUDA, so
stacking it would save little, and keeping it lets students with different optimizer settings or
learning-rate schedules fuse their forward and backward all the same.

Who fuses: students of the same architecture (same module structure, parameter names and shapes;
a cohort's active students are always at the same epoch) whose loss keeps the default optimizer
step. A loss's preparation stage runs before training, so a prepared student fuses from its
prepared weights. A network whose training forward draws random numbers (dropout, drop-path)
cannot fuse: vmap would draw its members' numbers differently than unfused runs do, so it refuses.
Under ``--compile`` the fused forward runs eagerly (compiling the vmapped step, and CUDA graphs for
it, are not measured yet); students that do not fuse keep their compiled ``extract``.
"""

from __future__ import annotations

import copy
from contextlib import ExitStack, contextmanager
from dataclasses import fields
from typing import TYPE_CHECKING, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from bench.models.network import Network
from losses.base import MODEL_NEEDS, DistillLoss, Need, Outputs, optimized
from registry import ConfigError

if TYPE_CHECKING:
    from bench.training.cohort import Acceleration, Student


class _Extraction(nn.Module):
    """A network's ``extract`` as a module's forward (what ``functional_call`` calls), returning tensors only."""

    def __init__(self, network: Network, needs: frozenset[Need]):
        super().__init__()
        self.network, self.needs = network, needs

    def forward(self, images: Tensor) -> dict[str, Tensor | tuple[Tensor, ...]]:
        out = Network.extract(self.network, images, self.needs)  # the eager method, also under --compile
        return {f.name: getattr(out, f.name) for f in fields(Outputs) if getattr(out, f.name) is not None}


class _MeanPool(nn.Module):
    """Global average pooling as a mean over H and W. vmap has a batching rule for this; for adaptive average
    pooling of channels-last maps (what a convolution makes of the resident stream's crops) it has none, and
    falls back to a loop over the members."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean((-2, -1), keepdim=True)


def _vmap_friendly(network: Network) -> Network:
    """A copy of ``network`` to run under vmap (``functional_call`` supplies every weight and buffer), its global
    average pools as means: the same function, summed in another order."""
    network = copy.deepcopy(network)
    for module in list(network.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.AdaptiveAvgPool2d) and child.output_size in (1, (1, 1)):
                setattr(module, name, _MeanPool())
    return network


class FusedStudents:
    """Two or more same-architecture students trained as one stacked network; ``train_step`` as a Student's."""

    def __init__(self, members: Sequence["Student"]):
        self.members = list(members)
        needs = frozenset().union(*(s.loss.needs & MODEL_NEEDS for s in self.members))
        self._extraction = _Extraction(_vmap_friendly(self.members[0].network), needs)
        self._forward = vmap(self._member_forward, in_dims=(0, None), randomness="error")
        self._own = [s.network.state_dict(keep_vars=True) for s in self.members]
        self._original = [{name: t.data for name, t in own.items()} for own in self._own]
        self.stacked: dict[str, Tensor] = {}
        for name, first in self._own[0].items():
            stacked = torch.stack([own[name].detach() for own in self._own])
            self.stacked[name] = stacked.requires_grad_(first.requires_grad)
            for own, view in zip(self._own, stacked.detach().unbind()):
                own[name].data = view  # the student's tensor now lives in the stacked one

    def release(self) -> None:
        """Give every network its original storage back, holding the trained values."""
        for own, original in zip(self._own, self._original):
            for name, tensor in own.items():
                original[name].copy_(tensor.data)
                tensor.data = original[name]

    def _member_forward(self, state: dict[str, Tensor], images: Tensor) -> dict:
        return functional_call(self._extraction, {f"network.{k}": v for k, v in state.items()}, (images,))

    def _stacked_forward(self, images: Tensor) -> dict[str, Tensor | tuple[Tensor, ...]]:
        try:
            return self._forward(self.stacked, images)
        except RuntimeError as exc:
            if "randomness" not in str(exc):
                raise
            raise ConfigError("--fuse: the student network draws random numbers in its training forward "
                              "(dropout or drop-path), which fused students cannot reproduce; "
                              "run without --fuse") from None

    def _member_outputs(self, views: list[dict[str, Tensor | tuple[Tensor, ...]]], index: int) -> Outputs:
        """One member's slice of the stacked outputs of the batch's view (and of its strong view, if any)."""
        first, *strong = [Outputs(**{name: tuple(t[index] for t in value) if isinstance(value, tuple) else value[index]
                                     for name, value in stacked.items()}) for stacked in views]
        first.strong = strong[0] if strong else None
        return first

    def train_step(self, images: Tensor, labels: Tensor, indices: Tensor, teacher: Outputs, epoch: int,
                   step: int, accel: "Acceleration", strong: Tensor | None = None) -> None:
        with ExitStack() as timing:  # each member's step time is the fused step's
            for student in self.members:
                timing.enter_context(student.timer.section("step"))
            with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=accel.amp):
                views = [self._stacked_forward(view) for view in (images, strong) if view is not None]
            objectives = [sum(s.objective(self._member_outputs(views, i), teacher, labels, indices, epoch, step, accel))
                          for i, s in enumerate(self.members)]
            for student in self.members:
                student.optimizer.zero_grad(set_to_none=True)
            for tensor in self.stacked.values():
                tensor.grad = None
            sum(objectives).backward()  # the members share no weights: each one's gradient is its own objective's
            for index, (student, own) in enumerate(zip(self.members, self._own)):
                for name, stacked_tensor in self.stacked.items():
                    if stacked_tensor.grad is not None:
                        own[name].grad = stacked_tensor.grad[index]
                # the rest of DistillLoss.optimizer_step, which every fused student keeps
                student.gradients_ready(optimized(student.optimizer))
                student.optimizer.step()
                student.scheduler.after_batch()


def fusable(student: "Student") -> bool:
    """A loss that steps its own optimizer (``DistillLoss.optimizer_step`` overridden) trains alone."""
    return type(student.loss).optimizer_step is DistillLoss.optimizer_step


def _architecture(network: Network) -> tuple:
    """Networks with equal keys compute the same function of their weights."""
    shapes = tuple((k, tuple(t.shape), t.dtype) for k, t in network.state_dict().items())
    return repr(network), shapes


@contextmanager
def fused(students: Sequence["Student"], accel: "Acceleration") -> Iterator[list["Student | FusedStudents"]]:
    """The cohort's members for one epoch: every group of two or more fusable same-architecture students
    as one ``FusedStudents`` (when ``accel.fuse``), every other student as itself."""
    if not accel.fuse:
        yield list(students)
        return
    groups: dict[tuple, list[Student]] = {}
    for student in students:
        key = _architecture(student.network) if fusable(student) else ("alone", id(student))
        groups.setdefault(key, []).append(student)
    members = [FusedStudents(group) if len(group) > 1 else group[0] for group in groups.values()]
    try:
        yield members
    finally:
        for member in members:
            if isinstance(member, FusedStudents):
                member.release()
