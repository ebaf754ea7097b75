"""How close the cohort step comes to the model-only limit, and how much it saves over sequential runs.

Three measurements on the same synthetic, CIFAR-shaped data held on the device:

1. ``model-only`` — the limit: one teacher forward, then for each of N students forward + CE +
   backward + optimizer step; no distillation loss, and batches the data path made beforehand.
2. ``cohort`` — distillbench's step: the real data path (indexing + augmentation on the device),
   one teacher forward sharing only what the losses need, each student with its real loss.
3. ``sequential`` — the same N students trained one at a time, each with its own teacher forward
   (what running one job per loss costs).

Every row carries the acceleration flags it ran with; the CLI's ``--ablate`` repeats the cohort
measurement with single flags flipped. Under ``fuse`` only the cohort step fuses its same-architecture
students (``bench.training.fuse``); the limit and the sequential runs stay one network at a time.
It measures and reports ratios; it never asserts timings.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from bench.training.cohort import Acceleration, Student, cohort_step, new_student, teacher_outputs
from bench.recipes.resolve import TrainSettings, resolve_loss
from bench.data.base import DatasetInfo, ImageTensors
from bench.data.stream import ResidentStream
from bench.models.network import create_network, probe_shapes
from bench.training.streams import StudentStreams
from bench.training.fuse import fused
from losses import LOSSES, LossContext
from losses.base import MODEL_NEEDS, ModelShapes, Need

DEFAULT_LOSSES = "kd,fitnet,at,sp,crd,dkd,dist,ot-ipot"
MODES = ("model-only", "cohort", "sequential")
ROUNDS = 2
WARM_UP = 2  # steps before the clock starts (a DataLoader's workers start and fill their queues here)
SETTINGS = TrainSettings(epochs=1, batch_size=64, lr=0.05, momentum=0.9, weight_decay=5e-4, milestones=(), gamma=0.1)


@dataclass(frozen=True)
class HarnessSetup:
    teacher: str
    student: str
    losses: list[str]
    batch_size: int
    steps: int
    image_size: int = 32
    num_classes: int = 100


def _info(setup: HarnessSetup) -> DatasetInfo:
    return DatasetInfo("cifar-shaped", setup.num_classes, 3, setup.image_size,
                       (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), augment="crop-flip")


def _students(setup: HarnessSetup, info: DatasetInfo, teacher_shapes: ModelShapes, device: torch.device,
              num_train: int, accel: Acceleration) -> list[Student]:
    students = []
    for name in setup.losses:
        torch.manual_seed(0)
        network, _ = create_network(setup.student, info)
        network.to(device)
        spec = resolve_loss(name, {}, {})
        context = LossContext(probe_shapes(network, info, device), teacher_shapes, num_train)
        accel.apply(network)
        loss = LOSSES.get(spec.name)(context, **spec.params).to(device)
        students.append(new_student(spec.name, 0, network, loss, SETTINGS, spec.weight, spec.ce_weight))
    return students


def synthetic_split(count: int, setup: HarnessSetup) -> ImageTensors:
    """``count`` uint8 images of the setup's shape with labels cycling over its classes (no dataset needed)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 3, setup.image_size, setup.image_size), dtype=torch.uint8, generator=generator)
    return ImageTensors(images, torch.arange(count) % setup.num_classes)


def _stream(setup: HarnessSetup, info: DatasetInfo, device: torch.device, count: int) -> ResidentStream:
    """``count`` synthetic images (one epoch) through the resident data path."""
    return ResidentStream(synthetic_split(count, setup), info, setup.batch_size, device, train=True, seed=0)


def profile_cohort_step(setup: HarnessSetup, device: torch.device, accel: Acceleration, rows: int = 10) -> str:
    """Where the time of the cohort step goes: torch.profiler's operators by their own time over two steps
    (after two warm-up steps), as a text table."""
    from torch.profiler import ProfilerActivity, profile

    info = _info(setup)
    count = setup.batch_size * 4
    batches = iter(_stream(setup, info, device, count).epoch(0))
    teacher, students, needs = cohort_under_test(setup, info, device, count, accel)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with fused(students, accel) as members:
        streams = StudentStreams(len(members), device, accel.streams)
        for step in range(2):
            cohort_step(members, teacher, needs, *next(batches), 0, step, accel, streams)
        with profile(activities=activities) as profiler:
            for step in range(2, 4):
                cohort_step(members, teacher, needs, *next(batches), 0, step, accel, streams)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
    order = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return profiler.key_averages().table(sort_by=order, row_limit=rows, max_name_column_width=44)


def fed(batches: Iterator[tuple[Tensor, Tensor, Tensor]], work: Callable[[int, tuple], None]) -> Callable[[int], None]:
    """A step (for ``seconds_per_step``) that takes the next of ``batches`` and works on it."""
    batches = iter(batches)
    return lambda step: work(step, next(batches))


def seconds_per_step(step: Callable[[int], None], steps: int, device: torch.device) -> float:
    """Mean seconds of ``step(i)`` over ``steps`` steps after ``WARM_UP`` of them (synchronised only around the
    timed block)."""
    for warm in range(WARM_UP):
        step(warm)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for i in range(WARM_UP, WARM_UP + steps):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / steps


def cohort_under_test(setup: HarnessSetup, info, device: torch.device, count: int, accel: Acceleration):
    """The frozen teacher, the students of ``setup`` and what the losses need of the teacher."""
    torch.manual_seed(0)
    teacher, _ = create_network(setup.teacher, info)
    teacher.to(device).eval().requires_grad_(False)
    students = _students(setup, info, probe_shapes(teacher, info, device), device, count, accel)
    accel.apply(teacher)
    return teacher, students, frozenset().union(*(s.loss.needs & MODEL_NEEDS for s in students))


def run_harness_benchmark(setup: HarnessSetup, device: torch.device, accel: Acceleration,
                          modes: tuple[str, ...] = MODES) -> tuple[pd.DataFrame, dict[str, float | None]]:
    """Per mode: ms/step and images/s (with the acceleration flags that made them); plus each loss's
    mean ms per call inside the cohort step."""
    info = _info(setup)
    count = setup.batch_size * (setup.steps + WARM_UP)
    stream = _stream(setup, info, device, count)
    # the limit's batches: made once by the same data path, so they have the cohort's memory layout
    # (augmented batches come out channels_last) but cost nothing to produce while timed
    ready = [(images, labels) for images, labels, _ in stream.epoch(0)]
    teacher, students, all_needs = cohort_under_test(setup, info, device, count, accel)

    def model_only(i: int) -> None:
        images, labels = ready[i % len(ready)]
        if accel.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)  # as the cohort step does
        teacher_outputs(teacher, images, frozenset({Need.LOGITS}), accel)
        for s in students:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=accel.amp):
                loss = F.cross_entropy(s.network.extract(images, frozenset()).logits.float(), labels)
            s.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            s.optimizer.step()

    def cohort(i: int) -> None:
        epoch_batches = stream.epoch(i)  # the real data path: order + augmentation on the device
        images, labels, indices = next(iter(epoch_batches))
        cohort_step(members, teacher, all_needs, images, labels, indices, 0, i, accel, streams)

    def sequential(i: int) -> None:
        images, labels, indices = next(iter(stream.epoch(i)))
        for s in students:  # a cohort of one, with its own teacher forward
            cohort_step([s], teacher, s.loss.needs & MODEL_NEEDS, images, labels, indices, 0, i, accel, alone)

    alone = StudentStreams(1, device, enabled=False)
    steps = {"model-only": model_only, "cohort": cohort, "sequential": sequential}
    best = {mode: float("inf") for mode in modes}
    with fused(students, accel) as members:  # fused once, as for an epoch; the other modes run unfused
        streams = StudentStreams(len(members), device, accel.streams)
        for _ in range(ROUNDS):  # interleaved rounds, fastest kept: no mode profits from running later
            for mode in modes:
                best[mode] = min(best[mode], seconds_per_step(steps[mode], setup.steps, device))
    frame = pd.DataFrame([{"mode": mode, "ms_per_step": seconds * 1000, "images_per_s": setup.batch_size / seconds}
                          for mode, seconds in best.items()])
    frame["students"] = len(students)
    frame["batch_size"] = setup.batch_size
    return frame.assign(**asdict(accel)), {s.name: s.timer.mean_ms("loss") for s in students}
