"""``bench run`` from start to end: plan (validate everything, write nothing), then train and record.

For each seed, the runs of every requested loss that are not already in the results store form
one cohort: they share the teacher, the data stream and each batch's teacher forward. Students
resume from their last epoch checkpoint; finished runs are skipped.

Students train on the training split less its validation split (the recipe's ``[validation] size``,
``--validation-size``) and are evaluated on both held-out splits after every epoch; the teacher trains on
the whole training split. Code that drives cohorts reads each epoch through ``execute(plan, on_epoch=...)``.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
from filelock import Timeout

from bench.store import checkpoint
from bench.store.collapse import collapse_reason
from bench.training.cohort import Acceleration, Student, new_student, train_cohort
from bench.recipes.resolve import (
    STANDARD_PROTOCOL, RunSpec, dataset_recipe, loss_schedule, pair_loss_settings, parse_overrides,
    resolve_loss, resolve_pair, resolve_train, resolve_validation,
)
from bench.data import DATASETS, DataRequest, LoadedDataset, load_dataset, make_stream
from bench.data.base import ImageTensors
from bench.data.stream import LoaderStream, Loading, ResidentStream, batches_per_epoch
from bench.data.validation import carve_validation, training_subset
from bench.environment import device_name, resolve_device, versions
from bench.models.network import PREACT_MODELS, check_model_name, create_network, gives_preact, probe_shapes
from bench.console.progress import Reporter
from bench.store.results import ResultsStore, check_writable_directory
from bench.seeding import derive_seed, generator
from bench.training.teacher import Teacher, TeacherPlan, obtain_teacher, plan_teacher
from bench.training.distributed import World, sync_batchnorm
from bench.training.first_batch import refuse_broken_losses
from bench.training.tracking import Tracking
from bench.store.overlay import overlay_path, read_overlay, tuned_settings
from bench.console.wording import plural
from losses import LOSSES, LossContext, Preparation
from losses.base import Need
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
    teacher_seed: int | None = None
    strong_view: bool = False  # a second, strongly augmented view of every batch for every student
    validation_size: int | None = None  # images held out of the students' training split; None: the recipe's, 0: none
    clip_grad: float | None = None  # the students' gradient norm clipped to this (the teacher's never); None: the recipe's
    train_size: int | None = None  # students train on this many of their training images (stratified); None: all
    tuned: bool = False  # apply RESULTS_DIR/DATASET/tuned.toml (bench tune's settings) under --set
    sequential: bool = False
    accel: Acceleration = field(default_factory=Acceleration)
    loading: Loading = field(default_factory=Loading)
    quiet: bool = False
    command: str = "bench run"
    world: World = field(default_factory=World)  # the torchrun processes training each cohort together
    tracking: Tracking = field(default_factory=Tracking)  # live curves per run: TensorBoard, Weights & Biases


@dataclass
class Plan:
    request: RunRequest
    device: torch.device
    data: LoadedDataset  # as loaded: the teacher trains on its whole training split
    specs: dict[int, list[RunSpec]]  # seed -> the runs of that seed still to do
    teacher: TeacherPlan
    skipped: int
    student_data: LoadedDataset  # what the students see: training split less validation, validation, test
    planned: dict[int, list[RunSpec]]  # seed -> every run of that seed, finished or not


EpochHook = Callable[[RunSpec, int, dict], bool]
"""``on_epoch(run, epoch, record)``, called (on the main process) after every epoch of every run, ``epoch``
counted from 1. ``record`` is that epoch's history entry: ``val_top1`` / ``val_top5`` (validation top-1 /
top-5 in %; None without a validation split), ``top1`` / ``top5`` (test), ``top_class_share`` (test, %),
``train`` (mean of each loss term), ``lr``; scores are NaN once the run diverged. Returning True stops that
run after this epoch: no row is written (its checkpoint stays, so a later ``bench run`` resumes it)."""


def plan_run(request: RunRequest) -> Plan:
    """Resolve and validate everything; raises ConfigError before anything is written."""
    if request.accel.fuse and request.world.distributed:  # fused BatchNorm keeps per-process statistics
        raise ConfigError(f"--fuse trains on one process; got {request.world.size} (drop --fuse or --nproc)")
    DATASETS.entry(request.dataset)
    recipe = dataset_recipe(request.dataset)
    loss_names = parse_names(request.losses, LOSSES)
    pair = resolve_pair(request.pair, request.teacher, request.student, recipe)
    for model in (pair.teacher, pair.student):
        check_model_name(model)
    if not request.seeds:
        raise ConfigError("no seeds given; expected e.g. --seeds 0 or --seeds 0,1,2")
    device = resolve_device(request.device)
    check_writable_directory(request.results_dir, "--results-dir")
    check_writable_directory(request.cache_dir, "--cache-dir")
    overrides = parse_overrides(list(request.overrides), loss_names)
    cli = {"epochs": request.epochs, "batch_size": request.batch_size, "lr": request.lr}
    teacher_settings = resolve_train(recipe, request.protocol, None, cli)
    searches, overrides = _tuned(request, loss_names, pair, overrides)
    for_pair = pair_loss_settings(pair, request.dataset)
    loss_specs = [resolve_loss(name, recipe, overrides.get(name, {}), for_pair) for name in loss_names]
    student_cli = {**cli, "clip_grad": request.clip_grad}
    settings = {spec.name: resolve_train(recipe, request.protocol, pair.student, student_cli,
                                         loss_schedule(recipe, request.protocol, spec.name, for_pair))
                for spec in loss_specs}
    data = load_dataset(request.dataset, DataRequest(request.data_dir, request.download, request.train_split,
                                                     request.cache_dir))
    validation_size = resolve_validation(recipe, request.validation_size)
    student_data = carve_validation(data, validation_size) if validation_size else data
    # a subset size the run's id records; None when the students see every training image
    train_size = request.train_size if request.train_size and request.train_size < len(student_data.train) else None
    if train_size:
        student_data = training_subset(student_data, train_size)
    if request.strong_view and not (isinstance(data.train, ImageTensors) and request.loading.path == "resident"):
        raise ConfigError(f"--strong-view needs a dataset held in memory (every one but imagenet) and --data-path "
                          f"resident; got {request.dataset} with --data-path {request.loading.path}")
    student_network, stem = create_network(pair.student, data.info)
    _check_preact(loss_names, pair, student_network, data.info)
    store = ResultsStore(request.results_dir, request.dataset)
    store.report_damage()
    finished = store.finished_ids()
    teacher = plan_teacher(pair, request.dataset, request.train_split, teacher_settings, request.teacher_checkpoint)
    for train in settings.values():
        request.world.per_rank_batch(train.batch_size)
    for who, train, images in (*(("student", s, len(student_data.train)) for s in settings.values()),
                               ("teacher", teacher.settings, len(data.train))):
        if train is not None and train.batch_size > images:
            raise ConfigError(f"{who} batch size {train.batch_size} is larger than the training set of "
                              f"{request.dataset} ({images} images), so an epoch would have no step; "
                              f"expected --batch-size {images} or less")
    specs, planned, skipped = {}, {}, 0
    for seed in request.seeds:
        runs = [RunSpec(request.dataset, request.train_split, pair, teacher.source, spec, seed,
                        request.protocol, settings[spec.name], stem, _teacher_seed(request, teacher),
                        request.strong_view, validation_size, train_size, searches.get(spec.name))
                for spec in loss_specs]
        planned[seed] = runs
        specs[seed] = [run for run in runs if run.run_id not in finished]
        skipped += len(runs) - len(specs[seed])
    return Plan(request, device, data, specs, teacher, skipped, student_data, planned)


def _tuned(request: RunRequest, loss_names: list[str], pair, overrides: dict) -> tuple[dict[str, str], dict]:
    """With ``--tuned``: each loss's search id, and its tuned settings under its ``--set`` ones."""
    if not request.tuned:
        return {}, overrides
    path = overlay_path(request.results_dir, request.dataset)
    overlay = read_overlay(path)
    tuned = {name: tuned_settings(overlay, name, pair.name, path) for name in loss_names}
    return ({name: search for name, (search, _) in tuned.items()},
            {name: {**settings, **overrides.get(name, {})} for name, (_, settings) in tuned.items()})


def _check_preact(loss_names: list[str], pair, student_network, info) -> None:
    """A loss that reads pre-activation stage features (OFD) needs both models to give them: said before any
    teacher is trained."""
    readers = [name for name in loss_names if Need.PREACT_FEATURES in LOSSES.get(name).needs]
    if not readers:
        return
    for role, model, network in (("student", pair.student, student_network),
                                 ("teacher", pair.teacher, create_network(pair.teacher, info)[0])):
        if not gives_preact(network.body):
            raise ConfigError(f"{readers[0]} needs pre-activation stage features of both models; the {role} "
                              f"'{model}' gives none (models that do: {PREACT_MODELS})")


def _teacher_seed(request: RunRequest, teacher: TeacherPlan) -> int | None:
    """The seed of the one teacher every seed shares; only a teacher trained here has a seed."""
    if request.teacher_seed is not None and not teacher.source.startswith("trained:"):
        raise ConfigError(f"--teacher-seed applies to a teacher trained here; this teacher is {teacher.source}")
    return request.teacher_seed


def execute(plan: Plan, on_epoch: Optional[EpochHook] = None) -> tuple[ResultsStore, dict[str, str]]:
    """Train and record every planned run; ``on_epoch`` (see ``EpochHook``) sees each epoch of each run.
    Returns the store, and loss name -> why, for each loss refused on its first batch (its runs are not
    recorded; every other run is)."""
    request = plan.request
    reporter = Reporter(request.quiet or not request.world.is_main)
    store = ResultsStore(request.results_dir, request.dataset)
    refused: dict[str, str] = {}
    if plan.skipped:
        reporter.info(f"{plural(plan.skipped, 'run')} already finished in {store.runs_csv}: skipped")
    for seed, runs in plan.specs.items():
        teacher = None
        for wait in (False, True):  # first the runs no other process is training, then wait for those
            with _claimed(store, runs, wait, request.world) as (mine, busy):
                if mine and teacher is None:
                    with request.world.main_first():  # rank 0 trains a missing teacher; the others read its cache
                        teacher = obtain_teacher(plan.teacher, plan.data, mine[0].teacher_trained_with, plan.device, request.cache_dir,
                                                 reporter, request.accel, request.loading)
                if mine:
                    reporter.info(f"seed {seed}: teacher {mine[0].pair.teacher} {teacher.top1:.2f}% top-1; "
                                  f"training {', '.join(r.loss.name for r in mine)}")
                    for cohort in [[run] for run in mine] if request.sequential else _cohorts(mine):
                        refused = _train_and_record(cohort, teacher, plan, store, reporter, on_epoch) | refused
            if busy:
                reporter.info(f"seed {seed}: another process is training {', '.join(r.loss.name for r in busy)}; "
                              f"waiting for it")
            runs = busy
    return store, refused


def _cohorts(runs: list[RunSpec]) -> list[list[RunSpec]]:
    """Runs that can share one data stream: those of one batch size (``--protocol authors`` gives each loss
    its authors' batch size), in their order."""
    sizes = dict.fromkeys(run.train.batch_size for run in runs)
    return [[run for run in runs if run.train.batch_size == size] for size in sizes]


@contextmanager
def _claimed(store: ResultsStore, runs: list[RunSpec], wait: bool,
             world: World) -> Iterator[tuple[list[RunSpec], list[RunSpec]]]:
    """Claim each run no other process holds (waiting for it when ``wait``); yield the claimed runs not
    recorded meanwhile, and those held by another process. A claim lasts until its row is written.
    Under torchrun rank 0 claims for its world: every rank trains the runs rank 0 holds."""
    with ExitStack() as claims:
        mine, busy = [], []
        for run in runs if world.is_main else ():
            try:
                claims.enter_context(store.claim(run.run_id).acquire(timeout=-1 if wait else 0))
                mine.append(run)
            except Timeout:
                busy.append(run)
        finished = store.finished_ids()  # another process may have recorded some since the plan
        mine_ids, busy_ids = world.broadcast(([r.run_id for r in mine if r.run_id not in finished],
                                              [r.run_id for r in busy]))
        yield [r for r in runs if r.run_id in mine_ids], [r for r in runs if r.run_id in busy_ids]


def _checkpoint_path(request: RunRequest, run: RunSpec) -> Path:
    return request.cache_dir / "runs" / f"{run.run_id}.pt"


def _train_and_record(runs: list[RunSpec], teacher: Teacher, plan: Plan, store: ResultsStore, reporter: Reporter,
                      on_epoch: Optional[EpochHook]) -> dict[str, str]:
    """Train the cohort and record each run; returns loss name -> why it was refused, for the losses refused."""
    request, data, device = plan.request, plan.student_data, plan.device
    seed = runs[0].seed
    settings = runs[0].train
    world = request.world
    train = make_stream(data.train, data.info, settings.batch_size, device, train=True, seed=seed,
                        loading=request.loading, shard=world.shard)
    test, validation = (None if split is None else make_stream(split, data.info, 256, device, train=False, seed=seed,
                                                               loading=request.loading, shard=world.shard)
                        for split in (data.test, data.validation))
    students = [_build_student(run, teacher, plan, reporter) for run in runs]
    by_student = dict(zip(map(id, students), runs))
    logs = {id(s): request.tracking.open(store.directory, run.run_id, run.as_dict(), settings.batch_size)
            for s, run in zip(students, runs) if world.is_main}
    started = time.perf_counter()

    def save(student: Student) -> None:
        student.history[-1]["device"] = _device(plan, settings.batch_size)  # where this epoch was trained, kept with it
        if world.is_main:  # every rank holds the same state; one writes it
            checkpoint.save(student.state_dict(), _checkpoint_path(request, by_student[id(student)]))
        if id(student) in logs:
            logs[id(student)].write(student.history[-1], student.epochs_done, len(train))
        if on_epoch is not None:  # one decision for every process
            run = by_student[id(student)]
            student.stopped = bool(world.broadcast(world.is_main and on_epoch(run, student.epochs_done,
                                                                              student.history[-1])))

    refuse_broken_losses(students, teacher.network, train, request.accel, runs[0].strong_view)
    cached = sum(s.done and s.refused is None for s in students)  # finished earlier, found in the cache
    train_cohort(students, teacher.network, train, test, reporter, request.accel, on_epoch_end=save,
                 strong_view=runs[0].strong_view, validation=validation)
    for log in logs.values():
        log.close()
    refused = [s for s in students if s.refused is not None]
    for student in refused:
        reporter.info(f"seed {seed}: {student.name} refused on its first batch ({student.refused}); not recorded")
    for student in students if world.is_main else ():  # every student is done: record each (also one whose row a crash lost)
        if student.stopped or student.refused is not None:
            continue
        run = by_student[id(student)]
        store.append(result_row(run, student, teacher, plan, request.command),
                     {**run.as_dict(), "run_id": run.run_id, "command": request.command, "world_size": world.size,
                      "per_rank_batch": world.per_rank_batch(settings.batch_size),
                      # what `bench reproduce` needs beside the command: "auto" resolved, and CPU kernels' threads
                      "device": str(device), "torch_threads": torch.get_num_threads(),
                      "diagnostics": diagnostics(student)})
    trained = len(students) - len(refused) - cached
    earlier = f"; {plural(cached, 'student')} trained earlier, taken from the cache" if cached else ""
    reporter.info(f"seed {seed}: {plural(trained, 'student')} trained in {time.perf_counter() - started:.0f} s{earlier}")
    return {s.name: s.refused for s in refused}


def _build_student(run: RunSpec, teacher: Teacher, plan: Plan, reporter: Reporter) -> Student:
    """Same seed -> same initial weights for every loss; the loss's own parts seeded per loss."""
    request, data, device = plan.request, plan.student_data, plan.device
    torch.manual_seed(derive_seed(run.seed, "student-init"))
    network, _ = create_network(run.pair.student, data.info)
    network = sync_batchnorm(network.to(device), request.world)
    context = LossContext(probe_shapes(network, data.info, device), probe_shapes(teacher.network, data.info, device),
                          len(data.train))
    request.accel.apply(network)
    torch.manual_seed(derive_seed(run.seed, "loss-init", run.loss.name))
    loss = sync_batchnorm(LOSSES.get(run.loss.name)(context, **run.loss.params).to(device), request.world)
    student = new_student(run.loss.name, run.seed, network, loss, run.train, run.loss.weight, run.loss.ce_weight,
                          request.world, steps_per_epoch=batches_per_epoch(len(data.train), run.train.batch_size))
    path = _checkpoint_path(request, run)
    if path.is_file():
        if checkpoint.restore(path, device, student.load_state_dict) is not None:
            return student
        return _build_student(run, teacher, plan, reporter)  # a damaged checkpoint was set aside: start afresh
    stream = make_stream(data.train, data.info, run.train.batch_size, device, train=True,
                         seed=derive_seed(run.seed, "prepare"), loading=request.loading)
    in_order = make_stream(data.train, data.info, run.train.batch_size, device, train=False, seed=0,
                           loading=request.loading)
    loss.prepare(Preparation(
        teacher=teacher.network, student=network,
        batches=_passes(stream, reporter, f"{run.loss.name} preparation (seed {run.seed})"),
        in_order=_passes(in_order, reporter, f"{run.loss.name} preparation, training set in order"),
        extract=lambda model, images, needs: model.extract(images, needs),
        device=device, generator=generator(device, run.seed, "prepare", run.loss.name),
        cache_dir=request.cache_dir / "prepare" / f"{run.dataset}-{run.teacher_source.replace(':', '-')}",
        params=vars(run.train),
    ))
    return student


def _passes(stream: ResidentStream | LoaderStream, reporter: Reporter, label: str) -> Callable[[], Iterator]:
    """``batches()`` for a preparation stage: each call is the next epoch (of a training stream: new order,
    new augmentation), shown as progress like a training epoch."""
    epochs = itertools.count()

    def batches() -> Iterator:
        epoch = next(epochs)
        with reporter.epoch(f"{label} · pass {epoch + 1}", len(stream)) as bar:
            for batch in stream.epoch(epoch):
                yield batch
                bar.advance()

    return batches


def best_epoch(curve: list[float]) -> int | None:
    """The epoch (from 1) of a curve's highest score, the later one on a tie; None when every score is NaN."""
    scored = [(value, epoch) for epoch, value in enumerate(curve, 1) if not math.isnan(value)]
    return max(scored)[1] if scored else None


def validation_columns(run: RunSpec, history: list[dict]) -> dict:
    """The validation-selected epoch, its validation top-1 and its test top-1 / top-5; empty without a split."""
    if run.validation_size is None:
        return dict.fromkeys(["val_size", "val_curve", "selected_epoch", "val_top1", "selected_top1", "selected_top5"])
    curve = [h["val_top1"] for h in history]
    chosen = best_epoch(curve)
    at = (lambda key: round(history[chosen - 1][key], 2)) if chosen else (lambda key: math.nan)
    return {"val_size": run.validation_size, "val_curve": _json([round(c, 2) for c in curve]),
            "selected_epoch": chosen, "val_top1": at("val_top1"), "selected_top1": at("top1"),
            "selected_top5": at("top5")}


def diagnostics(student: Student) -> dict:
    """What a collapse can be read from in the stored config: each epoch's mean of every term, and the first
    steps' terms, logit scale (std and mean over the batch) and total gradient norm (before any clipping)."""
    return {"epoch_terms": [h["train"] for h in student.history], "first_steps": student.first_steps}


def collapse_columns(student: Student, num_classes: int) -> dict:
    """The most-predicted class's share at the last test evaluation, and whether the run collapsed (and why);
    a diverged run is diverged, not collapsed."""
    last = student.history[-1]
    share = last.get("top_class_share", math.nan)  # a checkpoint from before the share was counted has none
    reason = "" if student.diverged or math.isnan(share) else collapse_reason(last["top1"], share, num_classes)
    return {"top_class_share": None if math.isnan(share) else round(share, 2), "collapsed": bool(reason),
            "collapse_reason": reason}


def result_row(run: RunSpec, student: Student, teacher: Teacher, plan: Plan, command: str) -> dict:
    curve = [h["top1"] for h in student.history]
    best = best_epoch(curve)
    best_top1, best_top5 = (curve[best - 1], student.history[best - 1]["top5"]) if best else (math.nan, math.nan)
    loss_ms = [h["loss_ms"] for h in student.history if h["loss_ms"] is not None and run.loss.weight]
    return {
        "run_id": run.run_id, "recipe_hash": run.recipe_hash, "dataset": run.dataset, "pair": run.pair.name,
        "teacher": run.pair.teacher, "student": run.pair.student, "loss": run.loss.name,
        "provider": run.loss.provider, "provider_version": run.loss.provider_version, "seed": run.seed,
        "teacher_seed": run.teacher_trained_with,
        "protocol": run.protocol, "strong_view": run.strong_view, "tuned": run.tuned, "stem": run.student_stem, "epochs": run.train.epochs,
        "batch_size": run.train.batch_size, "lr": run.train.lr, "clip_grad": run.train.clip_grad, "weight": run.loss.weight,
        "ce_weight": run.loss.ce_weight, "hparams": _json(run.loss.params),
        "best_top1": round(best_top1, 2), "best_top5": round(best_top5, 2), "best_epoch": best,
        "last_top1": round(curve[-1], 2), "last_top5": round(student.history[-1]["top5"], 2),
        **validation_columns(run, student.history),
        "teacher_top1": round(teacher.top1, 2), "teacher_top5": round(teacher.top5, 2),
        "teacher_fingerprint": teacher.fingerprint, "diverged": student.diverged,
        **collapse_columns(student, plan.data.info.num_classes), "curve": _json([round(c, 2) for c in curve]),
        "wall_s": round(sum(h["wall_s"] for h in student.history), 1),
        "s_per_epoch": round(sum(h["step_s"] for h in student.history) / len(curve), 2),
        "loss_ms": round(sum(loss_ms) / len(loss_ms), 3) if loss_ms else None,
        "device": _trained_on(student, _device(plan, run.train.batch_size)), **versions(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command,
    }


def _json(value) -> str:
    return json.dumps(value, sort_keys=True)


def _trained_on(student: Student, here: str) -> str:
    """Where the student's epochs were trained (each epoch's checkpoint says; one from before it did, here):
    a run found finished in a shared cache keeps the device and process count that produced its timings."""
    devices = list(dict.fromkeys(h.get("device", here) for h in student.history))
    return " then ".join(devices)


def _device(plan: Plan, batch_size: int) -> str:
    """The device; under torchrun also how many processes shared each global batch, and each one's part."""
    world, name = plan.request.world, device_name(plan.device)
    if not world.distributed:
        return name
    return f"{world.size} x {name} ({world.per_rank_batch(batch_size)} per process)"
