"""``bench run`` from start to end: plan (validate everything, write nothing), then train and record.

For each seed, the runs of every requested loss that are not already in the results store form
one cohort: they share the teacher, the data stream and each batch's teacher forward. Students
resume from their last epoch checkpoint; finished runs are skipped.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import torch

from bench import checkpoint
from bench.cohort import Acceleration, Student, new_student, train_cohort
from bench.config import (
    STANDARD_PROTOCOL, LossSpec, RunSpec, dataset_recipe, pair_loss_settings, parse_overrides, resolve_loss,
    resolve_pair, resolve_train,
)
from bench.data import DATASETS, DataRequest, LoadedDataset, load_dataset, make_stream
from bench.data.stream import LoaderStream, Loading, ResidentStream
from bench.environment import device_name, resolve_device, versions
from bench.models import check_model_name, create_network, probe_shapes
from bench.progress import Reporter
from bench.results import ResultsStore
from bench.seeding import derive_seed, generator
from bench.teacher import Teacher, TeacherPlan, obtain_teacher, plan_teacher
from losses import LOSSES, LossContext, Preparation
from registry import ConfigError, parse_names


@dataclass(frozen=True)
class RunRequest:
    """A ``bench run`` as the user typed it (None = take it from the recipe)."""

    dataset: str = "fashion-mnist"
    losses: str = "vanilla,kd,fitnet"
    seeds: tuple[int, ...] = (0,)
    pair: str | None = None
    teacher: str | None = None
    student: str | None = None
    protocol: str = STANDARD_PROTOCOL
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    overrides: tuple[str, ...] = ()
    device: str = "auto"
    results_dir: Path = Path("results")
    data_dir: Path | None = None
    download: bool = False
    train_split: str | None = None
    cache_dir: Path = Path.home() / ".cache" / "distillbench"
    teacher_checkpoint: Path | None = None
    sequential: bool = False
    accel: Acceleration = field(default_factory=Acceleration)
    loading: Loading = field(default_factory=Loading)
    quiet: bool = False
    command: str = "bench run"


@dataclass
class Plan:
    request: RunRequest
    device: torch.device
    data: LoadedDataset
    specs: dict[int, list[RunSpec]]  # seed -> the runs of that seed still to do
    teacher: TeacherPlan
    skipped: int


def plan_run(request: RunRequest) -> Plan:
    """Resolve and validate everything; raises ConfigError before anything is written."""
    DATASETS.entry(request.dataset)
    recipe = dataset_recipe(request.dataset)
    loss_names = parse_names(request.losses, LOSSES)
    pair = resolve_pair(request.pair, request.teacher, request.student, recipe)
    for model in (pair.teacher, pair.student):
        check_model_name(model)
    if not request.seeds:
        raise ConfigError("no seeds given; expected e.g. --seeds 0 or --seeds 0,1,2")
    device = resolve_device(request.device)
    overrides = parse_overrides(list(request.overrides), loss_names)
    cli = {"epochs": request.epochs, "batch_size": request.batch_size, "lr": request.lr}
    settings = resolve_train(recipe, request.protocol, pair.student, cli)
    teacher_settings = resolve_train(recipe, request.protocol, None, cli)
    tuned = pair_loss_settings(pair, request.dataset)
    loss_specs = [resolve_loss(name, recipe, overrides.get(name, {}), tuned) for name in loss_names]
    data = load_dataset(request.dataset, DataRequest(request.data_dir, request.download, request.train_split))
    _, stem = create_network(pair.student, data.info)
    store = ResultsStore(request.results_dir, request.dataset)
    finished = store.finished_ids()
    teacher = plan_teacher(pair, request.dataset, request.train_split, teacher_settings, request.teacher_checkpoint)
    specs, skipped = {}, 0
    for seed in request.seeds:
        runs = [RunSpec(request.dataset, request.train_split, pair, teacher.source, spec, seed,
                        request.protocol, settings, stem) for spec in loss_specs]
        specs[seed] = [run for run in runs if run.run_id not in finished]
        skipped += len(runs) - len(specs[seed])
    return Plan(request, device, data, specs, teacher, skipped)


def execute(plan: Plan) -> ResultsStore:
    request = plan.request
    reporter = Reporter(request.quiet)
    store = ResultsStore(request.results_dir, request.dataset)
    if plan.skipped:
        reporter.info(f"{plan.skipped} run(s) already finished in {store.runs_csv}: skipped")
    for seed, runs in plan.specs.items():
        if not runs:
            continue
        teacher = obtain_teacher(plan.teacher, plan.data, seed, plan.device, request.cache_dir, reporter,
                                 request.accel, request.loading)
        reporter.info(f"seed {seed}: teacher {runs[0].pair.teacher} {teacher.top1:.2f}% top-1; "
                      f"training {', '.join(r.loss.name for r in runs)}")
        cohorts = [[run] for run in runs] if request.sequential else [runs]
        for cohort in cohorts:
            _train_and_record(cohort, teacher, plan, store, reporter)
    return store


def _checkpoint_path(request: RunRequest, run: RunSpec) -> Path:
    return request.cache_dir / "runs" / f"{run.run_id}.pt"


def _train_and_record(runs: list[RunSpec], teacher: Teacher, plan: Plan, store: ResultsStore, reporter: Reporter) -> None:
    request, data, device = plan.request, plan.data, plan.device
    seed = runs[0].seed
    settings = runs[0].train
    train = make_stream(data.train, data.info, settings.batch_size, device, train=True, seed=seed, loading=request.loading)
    test = make_stream(data.test, data.info, 256, device, train=False, seed=seed, loading=request.loading)
    students = [_build_student(run, teacher, plan, reporter) for run in runs]
    by_student = dict(zip(map(id, students), runs))
    started = time.perf_counter()

    def save(student: Student) -> None:
        checkpoint.save(student.state_dict(), _checkpoint_path(request, by_student[id(student)]))

    train_cohort(students, teacher.network, train, test, reporter, request.accel, on_epoch_end=save)
    for student in students:  # every student is done here: record each (also one whose row a crash lost)
        run = by_student[id(student)]
        store.append(result_row(run, student, teacher, plan, request.command),
                     {**run.as_dict(), "run_id": run.run_id, "command": request.command})
    reporter.info(f"seed {seed}: {len(students)} student(s) trained in {time.perf_counter() - started:.0f} s")


def _build_student(run: RunSpec, teacher: Teacher, plan: Plan, reporter: Reporter) -> Student:
    """Same seed -> same initial weights for every loss; the loss's own parts seeded per loss."""
    request, data, device = plan.request, plan.data, plan.device
    torch.manual_seed(derive_seed(run.seed, "student-init"))
    network, _ = create_network(run.pair.student, data.info)
    network.to(device)
    context = LossContext(probe_shapes(network, data.info, device), probe_shapes(teacher.network, data.info, device),
                          len(data.train))
    request.accel.apply(network)
    torch.manual_seed(derive_seed(run.seed, "loss-init", run.loss.name))
    loss = LOSSES.get(run.loss.name)(context, **run.loss.params).to(device)
    student = new_student(run.loss.name, run.seed, network, loss, run.train, run.loss.weight, run.loss.ce_weight)
    path = _checkpoint_path(request, run)
    if path.is_file():
        student.load_state_dict(checkpoint.load(path, device))
        return student
    stream = make_stream(data.train, data.info, run.train.batch_size, device, train=True,
                         seed=derive_seed(run.seed, "prepare"), loading=request.loading)
    loss.prepare(Preparation(
        teacher=teacher.network, student=network,
        batches=_passes(stream, reporter, f"{run.loss.name} preparation (seed {run.seed})"),
        extract=lambda model, images, needs: model.extract(images, needs),
        device=device, generator=generator(device, run.seed, "prepare", run.loss.name),
        cache_dir=request.cache_dir / "prepare" / f"{run.dataset}-{run.teacher_source.replace(':', '-')}",
        params=vars(run.train),
    ))
    return student


def _passes(stream: ResidentStream | LoaderStream, reporter: Reporter, label: str) -> Callable[[], Iterator]:
    """``batches()`` for a preparation stage: each call is the next epoch (new order, new augmentation),
    shown as progress like a training epoch."""
    epochs = itertools.count()

    def batches() -> Iterator:
        epoch = next(epochs)
        with reporter.epoch(f"{label} · pass {epoch + 1}", len(stream)) as bar:
            for batch in stream.epoch(epoch):
                yield batch
                bar.advance()

    return batches


def result_row(run: RunSpec, student: Student, teacher: Teacher, plan: Plan, command: str) -> dict:
    curve = [h["top1"] for h in student.history]
    scored = [(top1, epoch) for epoch, top1 in enumerate(curve, 1) if not math.isnan(top1)]
    best_top1, best_epoch = max(scored) if scored else (math.nan, None)
    best_top5 = student.history[best_epoch - 1]["top5"] if best_epoch else math.nan
    loss_ms = [h["loss_ms"] for h in student.history if h["loss_ms"] is not None and run.loss.weight]
    return {
        "run_id": run.run_id, "recipe_hash": run.recipe_hash, "dataset": run.dataset, "pair": run.pair.name,
        "teacher": run.pair.teacher, "student": run.pair.student, "loss": run.loss.name,
        "provider": run.loss.provider, "provider_version": run.loss.provider_version, "seed": run.seed,
        "protocol": run.protocol, "stem": run.student_stem, "epochs": run.train.epochs,
        "batch_size": run.train.batch_size, "lr": run.train.lr, "weight": run.loss.weight,
        "ce_weight": run.loss.ce_weight, "hparams": _json(run.loss.params),
        "best_top1": round(best_top1, 2), "best_top5": round(best_top5, 2), "best_epoch": best_epoch,
        "last_top1": round(curve[-1], 2), "last_top5": round(student.history[-1]["top5"], 2),
        "teacher_top1": round(teacher.top1, 2), "teacher_top5": round(teacher.top5, 2),
        "diverged": student.diverged, "curve": _json([round(c, 2) for c in curve]),
        "wall_s": round(sum(h["wall_s"] for h in student.history), 1),
        "s_per_epoch": round(sum(h["step_s"] for h in student.history) / len(curve), 2),
        "loss_ms": round(sum(loss_ms) / len(loss_ms), 3) if loss_ms else None,
        "device": device_name(plan.device), **versions(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command,
    }


def _json(value) -> str:
    return json.dumps(value, sort_keys=True)
