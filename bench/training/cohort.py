"""Cohort training: one data stream and ONE teacher forward per batch shared by every student.

Each student of a cohort owns its network, its loss (with the loss's trainable parts) and its
optimizer. Students never share randomness: a student's per-step generator is seeded from
(seed, loss, epoch, step), so training a student alone (``sequential``) gives exactly the same
numbers as training it in a cohort, and a resumed student the same numbers as an uninterrupted one.

A batch's path, top to bottom: stream -> teacher.extract (no grad, only what some loss needs) ->
for each student: student.extract -> loss terms -> ce_weight * CE + weight * sum(terms) ->
the loss's optimizer_step (by default: backward -> optimizer step) -> device-side running sums
(read once per epoch). After each epoch every student is evaluated on the test split and, where the
dataset has one, on the validation split carved from its training split (bench.data.validation).

With a second, strongly augmented view (``--strong-view``) both models also run on it (two
forwards, as in MLKD's code: each view gets its own BatchNorm statistics). CE is the mean of the
two views' CE; a loss that reads both views (``Need.STRONG_VIEW``) gets them together, any other
loss is applied to each view and its terms averaged, so ``weight`` and ``ce_weight`` keep their scale.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.recipes.resolve import TrainSettings
from bench.data.stream import LoaderStream, ResidentStream
from bench.models.network import Network
from bench.console.progress import Reporter
from bench.seeding import generator
from bench.training.streams import StudentStreams
from bench.training.timing import SectionTimer
from bench.training.distributed import World
from bench.training.fuse import FusedStudents, fused
from bench.training.schedule import Schedule
from losses.base import MODEL_NEEDS, Batch, DistillLoss, Need, Outputs, defines_evaluation
from losses.contract import named_terms
from registry import ConfigError


COMPILED_GRAPHS = 64
FIRST_STEPS = 20  # steps of the first epoch whose terms, logit scale and gradient norm are kept (a collapse shows there)


class Scores(NamedTuple):
    """One evaluation pass of one network, in %: what a row's numbers and a collapse are read from."""

    top1: float
    top5: float
    top_class_share: float  # of the images, the share predicted as the most-predicted class


@dataclass(frozen=True)
class Acceleration:
    """Speed settings; none of them changes what is computed, only how fast (AMP: within bf16
    precision; compile: within float rounding of fused kernels)."""

    amp: bool = False  # bf16 autocast of the models (OT math stays fp32 inside the losses)
    channels_last: bool = False
    compile: bool = False  # torch.compile of every network's extract (students and teacher)
    streams: bool = False  # each student's step on its own CUDA stream (bench.training.streams)
    fuse: bool = False  # same-architecture students' networks as one stacked computation (bench.training.fuse)

    @classmethod
    def for_device(cls, device: torch.device, *, amp: bool | None = None, channels_last: bool | None = None,
                   compile: bool = False, streams: bool = False, fuse: bool = False) -> "Acceleration":
        """The flags as asked; AMP and channels_last default to on for CUDA, where they pay."""
        on_gpu = device.type == "cuda"
        if streams and not on_gpu:
            raise ConfigError(f"--streams needs a CUDA device; got {device.type} (drop --streams or pass --device cuda)")
        return cls(amp=on_gpu if amp is None else amp, channels_last=on_gpu if channels_last is None else channels_last,
                   compile=compile, streams=streams, fuse=fuse)

    def apply(self, network: Network) -> Network:
        """Put a network (on its device, shapes already probed) in the memory format and compiled form asked for."""
        if self.channels_last:
            network.to(memory_format=torch.channels_last)
        if self.compile:
            # one graph per architecture, needs and train/eval mode, shared by same-architecture
            # students; a cohort can need more than dynamo's default of 8 before it falls back to eager
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, COMPILED_GRAPHS)
            network.extract = torch.compile(network.extract)
        return network


@dataclass
class Student:
    """One member of a cohort and everything needed to resume it."""

    name: str  # the loss name: part of every random stream of this student
    seed: int
    epochs: int
    network: Network
    loss: DistillLoss
    weight: float
    ce_weight: float
    optimizer: torch.optim.Optimizer
    scheduler: Schedule
    history: list[dict] = field(default_factory=list)  # one entry per finished epoch
    diverged: bool = False
    stopped: bool = False  # stopped early by whoever drives the cohort (a pruned trial); not kept on resume
    clip_grad: float | None = None  # the total gradient norm is clipped to this before each step
    first_steps: list[dict] = field(default_factory=list)  # FIRST_STEPS entries: terms, logit_std/mean, grad_norm
    refused: str | None = None  # why its loss broke the contract on the first batch (bench.training.first_batch)
    world: World = field(default_factory=World)  # the processes this student trains in (bench.training.distributed)
    steps_per_epoch: int | None = None  # what a warm-up shorter than an epoch counts (losses.warmup)

    def __post_init__(self):
        self._start_epoch_sums()

    @property
    def epochs_done(self) -> int:
        return len(self.history)

    @property
    def done(self) -> bool:
        return self.diverged or self.stopped or self.refused is not None or self.epochs_done >= self.epochs

    def _start_epoch_sums(self) -> None:
        device = next(self.network.parameters()).device
        self.sums: dict[str, Tensor] = {}
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=device)
        self.timer = SectionTimer(device)

    def train_step(self, images: Tensor, labels: Tensor, indices: Tensor, teacher: Outputs, epoch: int,
                   step: int, accel: Acceleration, strong: Tensor | None = None) -> None:
        with self.timer.section("step"):
            with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=accel.amp):
                own = self.network.extract(images, self.loss.needs)
                if strong is not None:
                    own.strong = self.network.extract(strong, self.loss.needs)
            task, distillation = self.objective(own, teacher, labels, indices, epoch, step, accel)
            self.loss.optimizer_step(self.optimizer, task, distillation, self.gradients_ready)
            self.scheduler.after_batch()

    def gradients_ready(self, params: list[torch.nn.Parameter]) -> None:
        """Between backward and the optimizer's step (through the loss contract's ``average_gradients``): the
        gradients averaged over processes, then clipped to ``clip_grad``; in the first steps, their norm kept."""
        self.world.average_gradients(params)
        watched = bool(self.first_steps) and "grad_norm" not in self.first_steps[-1]  # a first step, not yet read
        if self.clip_grad is None and not watched:
            return
        norm = (torch.nn.utils.clip_grad_norm_(params, self.clip_grad) if self.clip_grad is not None
                else torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None]))
        if watched:
            self.first_steps[-1]["grad_norm"] = norm.detach()  # before clipping

    def objective(self, own: Outputs, teacher: Outputs, labels: Tensor, indices: Tensor, epoch: int, step: int,
                  accel: Acceleration) -> tuple[Tensor, Tensor]:
        """``ce_weight * CE`` and ``weight`` times the loss's terms on this student's outputs (also when
        its network ran fused with others: bench.training.fuse); the terms join the epoch's sums.
        With a strong view, CE and (for a loss that reads one view) the terms are means over the views."""
        batch = Batch(labels, indices, epoch, generator(labels.device, self.seed, "step", self.name, epoch, step),
                      self.epochs, step, self.steps_per_epoch)
        views = [own] if own.strong is None else [own, own.strong]
        calls = [(own, teacher)] if own.strong is None or Need.STRONG_VIEW in self.loss.needs else \
            [(own, teacher), (own.strong, teacher.strong)]
        with torch.autocast(labels.device.type, dtype=torch.bfloat16, enabled=accel.amp):
            ce = mean([F.cross_entropy(view.logits.float(), labels) for view in views])
            with self.timer.section("loss"):
                called = [self._terms(student, teachers, batch) for student, teachers in calls]
        terms = {key: mean([c[key] for c in called]) for key in called[0]}
        task, distillation = self.ce_weight * ce, self.weight * sum(t.float() for t in terms.values())
        self._accumulate({"ce": ce, **terms, "objective": task + distillation})
        if epoch == 0 and step < FIRST_STEPS and len(self.first_steps) == step:
            logits = own.logits.detach().float()
            self.first_steps.append({"terms": {k: v.detach().float() for k, v in {"ce": ce, **terms}.items()},
                                     "logit_std": logits.std(), "logit_mean": logits.mean()})
        return task, distillation

    def _terms(self, own: Outputs, teacher: Outputs, batch: Batch) -> dict[str, Tensor]:
        """The loss's named terms on what it declared."""
        needs = self.loss.needs
        own, teacher = visible(own, needs), visible(teacher, needs)
        if self.loss.batchwise:  # it relates examples to each other: give it the global batch
            own, teacher = self.world.gather_outputs(own), self.world.gather_outputs(teacher)
            batch = self.world.gather_batch(batch)
        return named_terms(self.loss(own, teacher, batch))

    def _accumulate(self, terms: dict[str, Tensor]) -> None:
        for key, value in terms.items():
            value = value.detach().float()
            self.sums[key] = self.sums[key] + value if key in self.sums else value
        self.nonfinite |= ~torch.isfinite(terms["objective"].detach())

    def finish_epoch(self, test: Scores, steps: int, wall_s: float, validation: Scores | None = None) -> dict:
        """Record the epoch (one host sync), step the schedule, detect divergence. ``val_top1`` / ``val_top5``
        are None without a validation split; every score is NaN once the student diverged."""
        self.diverged = bool(self.world.sum(self.nonfinite.int()))
        scored = {"top1": test.top1, "top5": test.top5, "top_class_share": test.top_class_share}
        if validation is not None:
            scored |= {"val_top1": validation.top1, "val_top5": validation.top5}
        record = {
            "val_top1": None, "val_top5": None,
            **{key: math.nan if self.diverged else value for key, value in scored.items()},
            "train": {k: float(self.world.mean(v)) / max(steps, 1) for k, v in self.sums.items()},
            "step_s": self.timer.totals_ms().get("step", 0.0) / 1000,  # this student's own work
            "wall_s": wall_s,  # the whole cohort's epoch, shared by its students
            "loss_ms": self.timer.mean_ms("loss"),
            "lr": self.optimizer.param_groups[0]["lr"],  # the rate of this epoch's last batch
        }
        self.history.append(record)
        self.first_steps = [_as_numbers(entry) for entry in self.first_steps]  # one read of the device, once
        self.scheduler.after_epoch()
        self._start_epoch_sums()
        return record

    def state_dict(self) -> dict:
        return {
            "network": self.network.state_dict(), "loss": self.loss.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "history": self.history, "diverged": self.diverged, "first_steps": self.first_steps,
        }

    def load_state_dict(self, state: dict) -> None:
        self.network.load_state_dict(state["network"])
        self.loss.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.history, self.diverged = list(state["history"]), bool(state["diverged"])
        self.first_steps = list(state.get("first_steps", []))  # a checkpoint from before they were kept has none


def _as_numbers(entry):
    """A first-steps entry with every tensor read as a float."""
    if isinstance(entry, dict):
        return {key: _as_numbers(value) for key, value in entry.items()}
    return float(entry) if isinstance(entry, Tensor) else entry


def mean(values: list[Tensor]) -> Tensor:
    """The mean over views; one view's value is itself, bit for bit."""
    return values[0] if len(values) == 1 else sum(values) / len(values)


def visible(outputs: Outputs, needs: frozenset[Need]) -> Outputs:
    """Only what a loss declared: a loss that reads something it did not ask for fails loudly."""
    return Outputs(
        logits=outputs.logits if Need.LOGITS in needs else None,
        features=outputs.features if Need.FEATURES in needs else (),
        embedding=outputs.embedding if Need.EMBEDDING in needs else None,
        preact_features=outputs.preact_features if Need.PREACT_FEATURES in needs else (),
        feature_map=outputs.feature_map if Need.FEATURE_MAP in needs else None,
        strong=visible(outputs.strong, needs) if Need.STRONG_VIEW in needs and outputs.strong is not None else None,
    )


@torch.no_grad()
def teacher_outputs(teacher: Network | None, images: Tensor, needs: frozenset[Need], accel: Acceleration) -> Outputs:
    if teacher is None or not needs:
        return Outputs()
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=accel.amp):
        return teacher.extract(images, needs)


@torch.no_grad()
def evaluate(networks: Sequence[Network], stream: ResidentStream | LoaderStream, accel: Acceleration,
             world: World = World(), losses: Sequence[DistillLoss] = ()) -> list[Scores]:
    """Top-1 / top-5 accuracy (%) and the most-predicted class's share of each network on one pass over
    ``stream`` (this rank's part of it), counted on the device and summed over ranks. A network's logits are
    its own, or those its loss (``losses[i]``) defines for evaluation (SimKD's, through the teacher's classifier)."""
    heads = [loss if defines_evaluation(loss) else None for loss in losses] or [None] * len(networks)
    for network, head in zip(networks, heads):
        network.eval()
        if head is not None:
            head.eval()
    device = next(networks[0].parameters()).device
    correct = torch.zeros(len(networks), 2, device=device)
    predicted = None  # per network, how many images each class was predicted for
    total = 0
    for images, labels, _ in stream.epoch(0):
        total += labels.shape[0]
        for i, (network, head) in enumerate(zip(networks, heads)):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=accel.amp):
                if head is None:
                    logits = network.extract(images, frozenset()).logits
                else:
                    logits = head.evaluation_logits(visible(network.extract(images, head.evaluation_needs),
                                                            head.evaluation_needs))
            top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
            hits = top5 == labels[:, None]
            correct[i, 0] += hits[:, 0].sum()
            correct[i, 1] += hits.any(dim=1).sum()
            if predicted is None:
                predicted = torch.zeros(len(networks), logits.shape[1], device=device)
            predicted[i] += torch.bincount(top5[:, 0], minlength=logits.shape[1])
    total = world.sum(torch.tensor(float(total), device=device))
    accuracy = (world.sum(correct) * 100 / total).tolist()
    share = (world.sum(predicted).amax(dim=1) * 100 / total).tolist()
    return [Scores(top1, top5, top) for (top1, top5), top in zip(accuracy, share)]


def shared_inputs(teacher: Network | None, teacher_needs: frozenset[Need], images: Tensor, strong: Tensor | None,
                  accel: Acceleration) -> tuple[Tensor, Tensor | None, Outputs]:
    """A batch's views in the memory format asked for, and the one teacher forward (per view) every student reads."""
    if accel.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
        strong = None if strong is None else strong.contiguous(memory_format=torch.channels_last)
    shared = teacher_outputs(teacher, images, teacher_needs, accel)
    if strong is not None:
        shared.strong = teacher_outputs(teacher, strong, teacher_needs, accel)
    return images, strong, shared


def cohort_step(students: Sequence[Student | FusedStudents], teacher: Network | None, teacher_needs: frozenset[Need],
                images: Tensor, labels: Tensor, indices: Tensor, epoch: int, step: int, accel: Acceleration,
                streams: StudentStreams, strong: Tensor | None = None) -> None:
    """One batch for the whole cohort: one teacher forward (per view), then each student's step (on its own stream
    if asked; a group of fused students steps as one member)."""
    images, strong, shared = shared_inputs(teacher, teacher_needs, images, strong, accel)
    for index, student in enumerate(students):
        with streams.member(index):
            student.train_step(images, labels, indices, shared, epoch, step, accel, strong)
    streams.join()


def train_cohort(students: Sequence[Student], teacher: Network | None, train: ResidentStream | LoaderStream,
                 test: ResidentStream | LoaderStream, reporter: Reporter, accel: Acceleration,
                 on_epoch_end: Callable[[Student], None] = lambda student: None, strong_view: bool = False,
                 validation: ResidentStream | LoaderStream | None = None) -> None:
    """Train every unfinished student to its last epoch; students resumed at different epochs join in turn.
    ``strong_view``: every batch also comes as a strongly augmented view (bench.data.views). ``validation``:
    evaluated after every epoch beside ``test`` (its scores in each history record's ``val_top1``/``val_top5``).
    ``on_epoch_end`` sees each student after its epoch is recorded; setting ``student.stopped`` ends it there."""
    pending = [s for s in students if not s.done]
    if not pending:
        return
    if teacher is not None:
        teacher.eval()
    last = max(s.epochs for s in pending)
    for epoch in range(min(s.epochs_done for s in pending), last):
        active = [s for s in pending if not s.done and s.epochs_done == epoch]
        if not active:
            continue
        teacher_needs = frozenset().union(*(s.loss.needs & MODEL_NEEDS for s in active))
        for student in active:
            student.network.train()
            student.loss.train()
        started = time.perf_counter()
        label = f"epoch {epoch + 1}/{last} · {', '.join(s.name for s in active)}"
        with reporter.epoch(label, len(train)) as bar, fused(active, accel) as members:
            streams = StudentStreams(len(members), train.device, accel.streams)
            for step, (images, labels, indices, *strong) in enumerate(train.epoch(epoch, strong_view)):
                cohort_step(members, teacher, teacher_needs, images, labels, indices, epoch, step, accel, streams,
                            *strong)
                bar.advance()
        networks, world, losses = [s.network for s in active], active[0].world, [s.loss for s in active]
        scores = evaluate(networks, test, accel, world, losses)
        held_out = evaluate(networks, validation, accel, world, losses) if validation is not None else [None] * len(active)
        wall_s = time.perf_counter() - started
        summary = []
        for student, tested, validated in zip(active, scores, held_out):
            record = student.finish_epoch(tested, len(train), wall_s, validated)
            on_epoch_end(student)
            score = "diverged" if student.diverged else f"{record['top1']:.2f}"
            summary.append(f"{student.name} {score}")
        reporter.info(f"epoch {epoch + 1}/{last}  top-1: " + "  ".join(summary))


def new_student(name: str, seed: int, network: Network, loss: DistillLoss, settings: TrainSettings,
                weight: float, ce_weight: float, world: World = World(), steps_per_epoch: int | None = None) -> Student:
    """A student with the recipe's SGD (or its loss's own optimizer) + step schedule over its network and its
    loss's parameters. ``steps_per_epoch``: what a per-batch (cosine) schedule and a short warm-up are spread over."""
    optimizer = loss.build_optimizer([*network.parameters(), *loss.parameters()], lr=settings.lr,
                                     momentum=settings.momentum, weight_decay=settings.weight_decay,
                                     nesterov=settings.nesterov)
    scheduler = Schedule(optimizer, settings.schedule, settings.epochs, settings.milestones, settings.gamma,
                         steps_per_epoch)
    return Student(name, seed, settings.epochs, network, loss, weight, ce_weight, optimizer, scheduler, world=world,
                   clip_grad=settings.clip_grad, steps_per_epoch=steps_per_epoch)
