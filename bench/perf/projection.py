"""The wall time of the CIFAR-100 table, projected from a measured number of steps.

One cohort (15 students of one pair, batch 64) is timed for some training steps on the resident
data path, and its per-epoch evaluation pass (10,000 test images) is timed once; a teacher's
training step is timed the same way. Under the CRD protocol an epoch is 50,000 // 64 = 781 steps
(the ragged last batch is dropped) plus one evaluation, for 240 epochs; the table is 13 pairs x
3 seeds of such cohorts, plus one teacher per pair. Every pair is assumed to cost what the
measured one costs, and the loss preparation stages (AB, FT, FSP initialisation) are left out:
both are written beside the numbers. It measures and multiplies; it asserts nothing.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import pandas as pd
import torch

from bench.training.cohort import Acceleration, cohort_step, evaluate
from bench.data.stream import ResidentStream
from bench.perf.harness import (
    ROUNDS, WARM_UP, HarnessSetup, _info, cohort_under_test, fed, seconds_per_step, synthetic_split,
)
from bench.training.streams import StudentStreams

# The CRD protocol on CIFAR-100 (bench/recipes/datasets/cifar100.toml) and the CRD table's size
TRAIN_IMAGES, TEST_IMAGES, EPOCHS, EVAL_BATCH = 50_000, 10_000, 240, 256
PAIRS, SEEDS = 13, 3
# vanilla, the 13 distillation losses of the CRD table, and DKD
TABLE_LOSSES = "vanilla,kd,fitnet,at,sp,cc,vid,rkd,pkt,ab,ft,fsp,nst,crd,dkd"


@dataclass(frozen=True)
class Measured:
    step_s: float  # one cohort step, every student
    eval_s: float  # one evaluation pass of every student
    teacher_step_s: float
    teacher_eval_s: float


def _cohort_time(setup: HarnessSetup, device: torch.device, accel: Acceleration, with_teacher: bool,
                 train_images: int, test_images: int) -> tuple[float, float]:
    """Seconds of one training step and of one evaluation pass of ``setup``'s students."""
    info = _info(setup)
    train = ResidentStream(synthetic_split(setup.batch_size * (setup.steps + WARM_UP), setup), info, setup.batch_size,
                           device, train=True, seed=0)
    test = ResidentStream(synthetic_split(test_images, setup), info, EVAL_BATCH, device, train=False, seed=0)
    teacher, students, needs = cohort_under_test(setup, info, device, train_images, accel)
    needs = needs if with_teacher else frozenset()
    streams = StudentStreams(len(students), device, accel.streams)

    def step(index: int, batch: tuple) -> None:
        images, labels, indices = batch
        cohort_step(students, teacher if with_teacher else None, needs, images, labels, indices, 0, index, accel, streams)

    step_s = min(seconds_per_step(fed(train.epoch(epoch), step), setup.steps, device) for epoch in range(ROUNDS))
    networks = [s.network for s in students]
    passes = []
    for _ in range(ROUNDS):  # the first pass also warms up; the fastest is kept, as for the steps
        start = time.perf_counter()
        evaluate(networks, test, accel)  # reads its counts back: synchronised
        passes.append(time.perf_counter() - start)
    return step_s, min(passes)


def measure(setup: HarnessSetup, device: torch.device, accel: Acceleration, train_images: int = TRAIN_IMAGES,
            test_images: int = TEST_IMAGES) -> Measured:
    """The cohort's step and evaluation, and those of a teacher trained alone (CE, no teacher of its own)."""
    step_s, eval_s = _cohort_time(setup, device, accel, True, train_images, test_images)
    alone = replace(setup, student=setup.teacher, losses=["vanilla"])
    teacher_step_s, teacher_eval_s = _cohort_time(alone, device, accel, False, train_images, test_images)
    return Measured(step_s, eval_s, teacher_step_s, teacher_eval_s)


def project(measured: Measured, setup: HarnessSetup, train_images: int = TRAIN_IMAGES,
            test_images: int = TEST_IMAGES) -> pd.DataFrame:
    """One row per quantity: the measured times and what they add up to under the CRD protocol."""
    steps = train_images // setup.batch_size
    epoch_s = steps * measured.step_s + measured.eval_s
    teacher_epoch_s = steps * measured.teacher_step_s + measured.teacher_eval_s
    cohort_h, teacher_h = EPOCHS * epoch_s / 3600, EPOCHS * teacher_epoch_s / 3600
    students = f"{len(setup.losses)} students"
    measured_on = f"measured: {students}, batch {setup.batch_size}"
    rows = [
        ("cohort step", measured.step_s * 1000, "ms", f"{measured_on}, {setup.steps} steps, fastest of {ROUNDS}"),
        ("evaluation pass", measured.eval_s, "s", f"measured: {students}, {test_images} images at batch {EVAL_BATCH}"),
        ("cohort epoch", epoch_s, "s", f"{steps} steps + one evaluation pass"),
        ("cohort, 240 epochs", cohort_h, "h", f"one pair, one seed, {students}"),
        ("teacher step", measured.teacher_step_s * 1000, "ms",
         f"measured: {setup.teacher} with CE, batch {setup.batch_size}"),
        ("teacher, 240 epochs", teacher_h, "h", f"{steps} steps + one evaluation pass per epoch"),
        ("table, students", PAIRS * SEEDS * cohort_h, "h",
         f"{PAIRS} pairs x {SEEDS} seeds x one cohort; every pair costed as {setup.teacher}-{setup.student}"),
        ("table, with teachers", PAIRS * SEEDS * cohort_h + PAIRS * teacher_h, "h",
         f"plus {PAIRS} teachers, one per pair shared by the seeds"),
    ]
    return pd.DataFrame(rows, columns=["quantity", "value", "unit", "basis"]).assign(
        teacher=setup.teacher, student=setup.student, losses=",".join(setup.losses), epochs=EPOCHS,
        train_images=train_images, test_images=test_images, batch_size=setup.batch_size)


def markdown(frame: pd.DataFrame, device_name: str, accel: Acceleration) -> str:
    flags = ", ".join(f"{key} {'on' if value else 'off'}" for key, value in asdict(accel).items())
    lines = [f"# The CIFAR-100 table's wall time, projected on {device_name}", "",
             f"Synthetic CIFAR-shaped data, resident data path, flags: {flags}. Loss preparation stages "
             "(AB, FT, FSP initialisation) are not included.", "",
             "| quantity | value | basis |", "|---|---|---|"]
    lines += [f"| {row.quantity} | {row.value:.2f} {row.unit} | {row.basis} |" for row in frame.itertuples()]
    return "\n".join(lines) + "\n"
