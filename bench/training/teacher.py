"""The teacher of a run: pretrained weights, a user's checkpoint, or trained once and cached.

A trained teacher is cached under ``<cache>/teachers/<hash>.pt`` where the hash covers everything
that determines it (dataset, split, model, schedule, seed), so every loss, every later run and
every seed-matched comparison reuses the same teacher. Training it is resumable like any student.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench.store import checkpoint
from bench.training.cohort import Acceleration, evaluate, new_student, train_cohort
from bench.recipes.resolve import Pair, TrainSettings, content_hash
from bench.data.base import LoadedDataset
from bench.data.stream import Loading, batches_per_epoch, make_stream
from bench.models.network import Network, create_network, probe_shapes
from bench.console.progress import Reporter
from bench.seeding import derive_seed
from bench.console.wording import plural
from losses.base import LossContext
from losses.vanilla import Vanilla
from registry import ConfigError


@dataclass(frozen=True)
class TeacherPlan:
    """What the teacher will be, decided (and hashed) before any work starts."""

    model: str
    source: str  # "trained:<recipe hash>" (the seed is the run's), "pretrained:<timm weights>" or "checkpoint:<sha256 prefix>"
    checkpoint: Path | None = None
    settings: TrainSettings | None = None


def plan_teacher(pair: Pair, dataset: str, train_split: str | None, settings: TrainSettings,
                 checkpoint_file: Path | None) -> TeacherPlan:
    if checkpoint_file is not None:
        if checkpoint_file.is_dir():
            raise ConfigError(f"teacher checkpoint {checkpoint_file} is a directory; expected a state_dict file")
        if not checkpoint_file.is_file():
            raise ConfigError(f"teacher checkpoint {checkpoint_file} does not exist")
        checkpoint.load(checkpoint_file, torch.device("cpu"))  # a damaged file: one line naming it, before any work
        digest = hashlib.sha256(checkpoint_file.read_bytes()).hexdigest()[:16]
        return TeacherPlan(pair.teacher, f"checkpoint:{digest}", checkpoint=checkpoint_file)
    if pair.teacher_weights:
        return TeacherPlan(pair.teacher, f"pretrained:{pair.teacher_weights}")
    recipe = content_hash({"dataset": dataset, "train_split": train_split, "model": pair.teacher,
                           **settings.identity()})
    return TeacherPlan(pair.teacher, f"trained:{recipe}", settings=settings)


@dataclass
class Teacher:
    """A teacher ready to distil from; ``fingerprint`` names its weights, so runs are paired only with
    runs that saw the same teacher (the same name and accuracy can hide different weights)."""

    network: Network
    top1: float
    top5: float
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        self.fingerprint = weights_fingerprint(self.network)


def weights_fingerprint(network: torch.nn.Module) -> str:
    """SHA-256 (first 16 hex digits) over the state dict's names, dtypes, shapes and bytes, in order."""
    digest = hashlib.sha256()
    for name, tensor in network.state_dict().items():
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def load_body_weights(network: Network, state: dict) -> None:
    """Accept a checkpoint of the ``Network`` or of the bare timm model."""
    state = {k.removeprefix("body."): v for k, v in state.items()}
    try:
        network.body.load_state_dict(state)
    except RuntimeError as exc:
        raise ConfigError(f"teacher checkpoint does not fit {type(network.body).__name__}: {str(exc).splitlines()[0]}") from None


def obtain_teacher(plan: TeacherPlan, data: LoadedDataset, seed: int, device: torch.device, cache_dir: Path,
                   reporter: Reporter, accel: Acceleration, loading: Loading = Loading()) -> Teacher:
    kind, _, key = plan.source.partition(":")
    if kind == "trained":
        key = content_hash({"recipe": key, "seed": seed})
        with checkpoint.lock(cache_dir / "teachers" / f"{key}.pt"):  # runs sharing the cache train it once
            return _trained_teacher(plan, key, data, seed, device, cache_dir, reporter, accel, loading)
    network, _ = create_network(key if kind == "pretrained" else plan.model, data.info, pretrained=kind == "pretrained")
    if kind == "checkpoint":
        load_body_weights(network, checkpoint.load(plan.checkpoint, torch.device("cpu")))
    accel.apply(network.to(device).requires_grad_(False))
    reporter.info(f"evaluating teacher {plan.source}")
    test = make_stream(data.test, data.info, 256, device, train=False, seed=seed, loading=loading)
    (top1, top5, _), = evaluate([network], test, accel)
    return Teacher(network, top1, top5)


def _trained_teacher(plan: TeacherPlan, key: str, data: LoadedDataset, seed: int, device: torch.device,
                     cache_dir: Path, reporter: Reporter, accel: Acceleration, loading: Loading) -> Teacher:
    final = cache_dir / "teachers" / f"{key}.pt"
    partial = cache_dir / "teachers" / f"{key}.partial.pt"
    torch.manual_seed(derive_seed(seed, "teacher-init"))
    network, _ = create_network(plan.model, data.info)
    network.to(device)
    shapes = probe_shapes(network, data.info, device)
    accel.apply(network)
    state = checkpoint.restore(final, device, lambda state: network.load_state_dict(state["network"]))
    if state is not None:
        reporter.info(f"teacher {plan.model}: cached ({state['top1']:.2f}% top-1), {final}")
        return Teacher(network.requires_grad_(False).eval(), state["top1"], state["top5"])
    student = new_student("teacher", seed, network, Vanilla(LossContext(shapes, shapes, len(data.train))).to(device),
                          plan.settings, weight=0.0, ce_weight=1.0,
                          steps_per_epoch=batches_per_epoch(len(data.train), plan.settings.batch_size))
    checkpoint.restore(partial, device, student.load_state_dict)
    reporter.info(f"training teacher {plan.model} for {plural(plan.settings.epochs, 'epoch')} (cached afterwards)")
    train = make_stream(data.train, data.info, plan.settings.batch_size, device, train=True, seed=seed, loading=loading)
    test = make_stream(data.test, data.info, 256, device, train=False, seed=seed, loading=loading)
    train_cohort([student], None, train, test, reporter, accel, on_epoch_end=lambda s: checkpoint.save(s.state_dict(), partial))
    if student.diverged:
        raise ConfigError(f"teacher {plan.model} diverged during training; lower --lr or check the recipe")
    last = student.history[-1]
    checkpoint.save({"network": network.state_dict(), "top1": last["top1"], "top5": last["top5"],
                     "curve": [h["top1"] for h in student.history]}, final)
    partial.unlink(missing_ok=True)
    return Teacher(network.requires_grad_(False).eval(), last["top1"], last["top5"])
