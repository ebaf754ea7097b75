"""The conformance kit: what every distillation loss, built-in or plugin, must get right.

Modelled on scikit-learn's ``check_estimator``. ``run_checks("my-loss")`` returns one
``CheckResult`` per check (``bench losses check`` prints them), and ``parametrize_with_checks``
turns the same checks into pytest cases for a plugin's own CI::

    from bench.conformance import parametrize_with_checks

    @parametrize_with_checks(["my-loss"])
    def test_conformance(loss, check):
        check(loss)

Each check builds the loss as ``bench run`` does (recipe hyperparameters or the class's defaults,
construction under a fixed seed, ``prepare`` on a tiny pair of timm test models, or of CIFAR zoo
models for a loss that needs pre-activation features) and feeds it
either random tensors of the probed shapes, which isolates the loss, or the models' own outputs,
which is what training gives it. A failure names the line of the loss that raised.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import os
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch
from torch import Tensor

from bench.training.cohort import visible
from bench.recipes.resolve import TrainSettings, hyperparameters, resolve_loss
from bench.data.base import DatasetInfo
from bench.models.network import Network, create_network, gives_preact, probe_shapes
from losses import LOSSES, Batch, DistillLoss, LossContext, ModelShapes, Need, Outputs, Preparation, total
from losses.base import MODEL_NEEDS
from losses.contract import LossContractError, finite_problem, gradient_problem, named_terms, named_tensors

CPU = torch.device("cpu")


class ConformanceError(AssertionError):
    """A loss breaks the contract; the message says how."""


class ConformanceWarning(UserWarning):
    """Something suspicious that does not break training, such as a declared need never read."""


# -- the loss under check -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Subject:
    """The loss under check and the hyperparameters it is built with."""

    cls: type[DistillLoss]
    params: Mapping[str, Any]

    @property
    def prepares(self) -> bool:
        return self.cls.prepare is not DistillLoss.prepare


def subject(loss: str | type[DistillLoss], params: Mapping[str, Any] | None = None) -> Subject:
    """A registered name (its recipe's hyperparameters, as ``bench run``) or a class (its own defaults)."""
    if isinstance(loss, str):
        spec = resolve_loss(loss, {}, dict(params or {}))
        return Subject(LOSSES.get(spec.name), spec.params)
    defaults = {n: p.default for n, p in hyperparameters(loss).items() if p.default is not inspect.Parameter.empty}
    return Subject(loss, {**defaults, **(params or {})})


# -- tiny worlds to check it in -----------------------------------------------------------------------
@dataclass(frozen=True)
class World:
    """A teacher/student pair of timm test models and a few batches of random images."""

    teacher: str
    student: str
    image_size: int
    num_classes: int
    batch_size: int
    batches: int = 2

    @property
    def info(self) -> DatasetInfo:
        return DatasetInfo("conformance", self.num_classes, 3, self.image_size, (0.5,) * 3, (0.25,) * 3, "none")


SAME = World("test_resnet", "test_resnet", image_size=16, num_classes=5, batch_size=4)
ODD = World("test_resnet", "test_resnet", image_size=15, num_classes=7, batch_size=2)
# 5 stages vs 4, 16 px vs 13 px maps, 96-d vs 64-d embedding, different channels at every stage
CROSS = World("test_resnet", "test_convnext", image_size=16, num_classes=5, batch_size=4)
# pre-activation stage features come from the CIFAR zoo: the same worlds built from it (VGG-8 -> ResNet-8:
# 4 stages vs 3, 2 px vs 4 px last maps, 512-d vs 64-d embedding)
PREACT_WORLDS = {SAME: World("resnet8", "resnet8", image_size=16, num_classes=5, batch_size=4),
                 ODD: World("resnet8", "resnet8", image_size=15, num_classes=7, batch_size=2),
                 CROSS: World("vgg8_cifar", "resnet8", image_size=16, num_classes=5, batch_size=4)}


def world_for(subj: Subject, world: World) -> World:
    """``world``, or its CIFAR zoo counterpart for a loss that needs pre-activation features."""
    return PREACT_WORLDS.get(world, world) if Need.PREACT_FEATURES in subj.cls.needs else world


@dataclass
class Models:
    """A world built: both networks, the loss context probed from them, the batches."""

    teacher: Network
    student: Network
    ctx: LossContext
    data: list[tuple[Tensor, Tensor, Tensor]]  # (uint8 images, labels, indices) per batch


@cache
def _pristine(world: World) -> Models:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        teacher, _ = create_network(world.teacher, world.info)
        student, _ = create_network(world.student, world.info)
    teacher.requires_grad_(False).eval()  # as the harness hands it over
    num_train = world.batch_size * world.batches
    ctx = LossContext(probe_shapes(student, world.info, CPU), probe_shapes(teacher, world.info, CPU), num_train)
    gen = torch.Generator().manual_seed(0)
    size = (world.batch_size, 3, world.image_size, world.image_size)
    data = [(torch.randint(0, 256, size, generator=gen, dtype=torch.uint8),
             torch.randint(world.num_classes, (world.batch_size,), generator=gen),
             torch.arange(b * world.batch_size, (b + 1) * world.batch_size)) for b in range(world.batches)]
    return Models(teacher, student, ctx, data)


def models(world: World) -> Models:
    """A private copy: ``prepare`` may train the student."""
    return copy.deepcopy(_pristine(world))


def preparation(m: Models, cache_dir: str) -> Preparation:
    settings = TrainSettings(epochs=1, batch_size=m.data[0][0].shape[0], lr=0.05, momentum=0.9, weight_decay=5e-4,
                             milestones=(), gamma=0.1)
    return Preparation(teacher=m.teacher, student=m.student, batches=lambda: iter(m.data), in_order=lambda: iter(m.data),
                       extract=lambda model, images, needs: model.extract(images, needs), device=CPU,
                       generator=torch.Generator().manual_seed(0), cache_dir=Path(cache_dir), params=vars(settings))


_PREPARED: dict[tuple, tuple[DistillLoss, Models, float]] = {}  # prepare may train for epochs: once per loss


def _key(subj: Subject, world: World) -> tuple:
    return subj.cls, repr(sorted(subj.params.items())), world


def build(subj: Subject, world: World, *, fresh: bool = False) -> tuple[DistillLoss, Models]:
    """The loss as ``bench run`` builds it: seeded construction, then ``prepare`` (reused unless ``fresh``)."""
    world = world_for(subj, world)
    if not fresh and _key(subj, world) in _PREPARED:
        loss, m, _ = copy.deepcopy(_PREPARED[_key(subj, world)])
        return loss.train(), m
    m = models(world)
    torch.manual_seed(0)
    loss = subj.cls(m.ctx, **subj.params)
    if subj.prepares:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as cache_dir:
            loss.prepare(preparation(m, cache_dir))
        if not fresh:
            _PREPARED[_key(subj, world)] = copy.deepcopy((loss, m, time.perf_counter() - started))
    return loss.train(), m


# -- inputs -------------------------------------------------------------------------------------------
def random_outputs(shapes: ModelShapes, batch: int, gen: torch.Generator, *, fill: float | None = None,
                   grad: bool = False, dtype: torch.dtype = torch.float32, device: torch.device = CPU) -> Outputs:
    def tensor(*shape: int) -> Tensor:
        x = torch.randn(batch, *shape, generator=gen) if fill is None else torch.full((batch, *shape), fill)
        return x.to(device=device, dtype=dtype).requires_grad_(grad)

    return Outputs(tensor(shapes.num_classes), tuple(tensor(*f) for f in shapes.features), tensor(shapes.embedding),
                   tuple(tensor(*f) for f in shapes.preact_features),
                   feature_map=tensor(*shapes.feature_map) if shapes.feature_map else None)


def make_batch(labels: Tensor, indices: Tensor, seed: int, device: torch.device = CPU) -> Batch:
    return Batch(labels.to(device), indices.to(device), 0, torch.Generator(device=device).manual_seed(seed))


def step_inputs(m: Models, step: int, *, fill: float | None = None, dtype: torch.dtype = torch.float32,
                device: torch.device = CPU) -> tuple[Outputs, Outputs, Batch]:
    """Random (or constant) outputs of both models and a batch: the same tensors for the same ``step``."""
    gen = torch.Generator().manual_seed(step)
    size = m.data[0][0].shape[0]
    student = random_outputs(m.ctx.student, size, gen, fill=fill, grad=True, dtype=dtype, device=device)
    teacher = random_outputs(m.ctx.teacher, size, gen, fill=fill, dtype=dtype, device=device)
    labels = torch.randint(m.ctx.student.num_classes, (size,), generator=gen)
    indices = torch.randperm(m.ctx.num_train, generator=gen)[:size]
    return student, teacher, make_batch(labels, indices, step, device)


EVERY_OUTPUT = frozenset({Need.FEATURES, Need.EMBEDDING, Need.FEATURE_MAP})


def every_output(network: Network) -> frozenset[Need]:
    """Every output ``network`` gives (pre-activation features only where it has them)."""
    return EVERY_OUTPUT | ({Need.PREACT_FEATURES} if gives_preact(network.body) else frozenset())


def model_step(m: Models, images: Tensor, labels: Tensor, indices: Tensor) -> tuple[Outputs, Outputs, Batch]:
    """What training gives a loss: the teacher's outputs without gradient, the student's with."""
    with torch.no_grad():
        teacher = m.teacher.extract(images, every_output(m.teacher))
    return m.student.train().extract(images, every_output(m.student)), teacher, make_batch(labels, indices, 0)


# -- evaluating ---------------------------------------------------------------------------------------
def value(loss: DistillLoss, student: Outputs, teacher: Outputs, batch: Batch) -> Tensor:
    """The loss's total, after checking that it returned a scalar or a dict of named scalars."""
    try:
        return total(named_terms(loss(student, teacher, batch)))
    except LossContractError as exc:
        raise ConformanceError(str(exc)) from None


def require_finite(v: Tensor, case: str) -> None:
    problem = finite_problem(v)
    if problem:
        raise ConformanceError(f"{problem} on {case}")


def backward_finite(v: Tensor, leaves: Iterable[tuple[str, Tensor]], case: str) -> None:
    """Backpropagate (as the harness does, in float32) and require every gradient to be finite."""
    if not v.requires_grad:
        return
    v.float().backward()
    bad = [name for name, t in leaves if t.grad is not None and not torch.isfinite(t.grad).all()]
    if bad:
        raise ConformanceError(f"non-finite gradient of {_some(bad)} on {case}")


def _some(names: list[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _trainable(loss: DistillLoss) -> list[tuple[str, Tensor]]:
    return [(f"loss.{n}", p) for n, p in loss.named_parameters() if p.requires_grad]


def describe(exc: BaseException, cls: type) -> str:
    """``TypeError: ... (losses/foo.py:42)``: the error and the innermost line of the loss's own package."""
    source = getattr(sys.modules.get(cls.__module__), "__file__", None)
    home = os.path.dirname(source) + os.sep if source else None
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if home and f.filename.startswith(home)]
    where = ""
    if frames:
        path = os.path.relpath(frames[-1].filename)
        where = f" ({frames[-1].filename if path.startswith('..') else path}:{frames[-1].lineno})"
    message = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {message}{where}"


@contextlib.contextmanager
def isolated() -> Iterator[None]:
    """Leave the caller's RNG state alone, and use one CPU thread: on tensors this small, more threads
    only add synchronisation (and contend with whatever else runs on the machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.set_num_threads(threads)


# -- the checks ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """One conformance check; ``check(loss)`` raises ``ConformanceError`` when the loss fails it."""

    name: str
    run: Callable[[Subject], str | None]  # returns an optional note; warns with ConformanceWarning

    @property
    def description(self) -> str:
        return inspect.getdoc(self.run).splitlines()[0]

    def __call__(self, loss: str | type[DistillLoss], params: Mapping[str, Any] | None = None) -> None:
        with isolated():
            self.run(subject(loss, params))

    def __repr__(self) -> str:
        return self.name


CHECKS: list[Check] = []


def check(name: str) -> Callable[[Callable[[Subject], str | None]], Callable[[Subject], str | None]]:
    def add(run: Callable[[Subject], str | None]) -> Callable[[Subject], str | None]:
        CHECKS.append(Check(name, run))
        return run

    return add


@check("finite")
def check_finite(subj: Subject) -> None:
    """Finite value and gradients on random outputs, on constant outputs and on constant images."""
    for case in ("random outputs", "constant outputs", "constant images"):
        loss, m = build(subj, SAME)
        if case == "constant images":
            images, labels, indices = m.data[0]
            student, teacher, batch = model_step(m, torch.full_like(images, 128), labels, indices)
            leaves = list(m.student.named_parameters())
        else:
            student, teacher, batch = step_inputs(m, 0, fill=1.0 if case == "constant outputs" else None)
            leaves = named_tensors(student, "student")
        v = value(loss, student, teacher, batch)
        require_finite(v, case)
        backward_finite(v, [*leaves, *_trainable(loss)], case)


@check("gradients")
def check_gradients(subj: Subject) -> str | None:
    """Gradient reaches the student's outputs and the loss's parameters; teacher outputs stay untouched."""
    loss, m = build(subj, SAME)
    student, teacher, batch = step_inputs(m, 0)
    before = [(name, t, t.clone(), t._version) for name, t in named_tensors(teacher, "teacher")]
    v = value(loss, student, teacher, batch)
    unreached = gradient_problem(v, [t for _, t in named_tensors(student, "student")])
    if v.requires_grad:
        v.float().backward()
    changed = [name for name, t, copied, version in before if t._version != version or not torch.equal(t, copied)]
    if changed:
        raise ConformanceError(f"modifies {_some(changed)} in place; the teacher's outputs are shared by every "
                               "student of a cohort")
    if not subj.cls.needs & MODEL_NEEDS:
        return "needs no model outputs"
    if unreached:
        raise ConformanceError(unreached)
    if not any(t.grad is not None and bool(t.grad.abs().sum() > 0) for _, t in named_tensors(student, "student")):
        raise ConformanceError("the gradient with respect to every student output is zero")
    params = _trainable(loss)
    idle = [name for name, p in params if p.grad is None]
    if params and len(idle) == len(params):
        raise ConformanceError(f"none of the loss's {len(params)} trainable parameters gets a gradient")
    if idle:
        warnings.warn(ConformanceWarning(f"trainable parameters that never get a gradient: {_some(idle)}"))
    return None


@check("strong view")
def check_strong_view(subj: Subject) -> str | None:
    """A loss that reads the strong view (Need.STRONG_VIEW) is finite with one and its gradient reaches the
    student's strong-view outputs."""
    if Need.STRONG_VIEW not in subj.cls.needs:
        return "reads one view: under --strong-view the harness applies it to each"
    loss, m = build(subj, SAME)
    student, teacher, batch = step_inputs(m, 0)
    student.strong, teacher.strong, _ = step_inputs(m, 1)
    v = value(loss, visible(student, subj.cls.needs), visible(teacher, subj.cls.needs), batch)
    require_finite(v, "outputs with a strong view")
    leaves = named_tensors(student.strong, "student.strong")
    backward_finite(v, leaves, "outputs with a strong view")
    if not any(t.grad is not None and bool(t.grad.abs().sum() > 0) for _, t in leaves):
        raise ConformanceError("declares Need.STRONG_VIEW but no gradient reaches the student's strong-view outputs")
    return None


def _state_difference(a: DistillLoss, b: DistillLoss) -> str | None:
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys():
        return f"state_dict keys ({_some(sorted(sa.keys() ^ sb.keys()))})"
    for key in sa:
        x, y = sa[key], sb[key]
        same = torch.equal(x, y) if isinstance(x, Tensor) and isinstance(y, Tensor) else x == y
        if not same:
            return key
    return None


@check("deterministic")
def check_deterministic(subj: Subject) -> None:
    """Same seed and generator give the same parameters and values, after prepare too, whatever the global RNG."""
    first, m = build(subj, SAME, fresh=True)
    second, _ = build(subj, SAME)
    differing = _state_difference(first, second)
    if differing:
        raise ConformanceError(f"two instances built{' and prepared' if subj.prepares else ''} under the same seed "
                               f"differ in {differing}")
    runs = [(first, 1), (copy.deepcopy(first), 1), (second, 2)]
    values = []
    for loss, global_seed in runs:
        torch.manual_seed(global_seed)
        values.append(torch.stack([value(loss, *step_inputs(m, step)).detach().float() for step in range(2)]))
    if not torch.equal(values[0], values[1]):
        raise ConformanceError(f"identical inputs and generators give different values: {values[0].tolist()} "
                               f"and {values[1].tolist()}")
    if not torch.equal(values[0], values[2]):
        raise ConformanceError("the value depends on the global RNG; draw randomness from batch.generator, so a "
                               "student's numbers do not depend on what else is trained with it")


def _train_steps(subj: Subject, world: World) -> None:
    world = world_for(subj, world)
    loss, m = build(subj, world)
    for images, labels, indices in m.data:
        v = value(loss, *model_step(m, images, labels, indices))
        case = f"{world.teacher} -> {world.student} outputs at {world.image_size} px"
        require_finite(v, case)
        backward_finite(v, [*m.student.named_parameters(), *_trainable(loss)], case)


@check("small-batch")
def check_small_batch(subj: Subject) -> None:
    """Batch size 2 and odd shapes: 15x15 three-channel images, 7 classes."""
    _train_steps(subj, ODD)


@check("cross-architecture")
def check_cross_architecture(subj: Subject) -> None:
    """A teacher and student differing in channels, resolution, stage count and embedding size."""
    _train_steps(subj, CROSS)


def autocast_modes() -> list[tuple[torch.device, torch.dtype]]:
    modes = [(CPU, torch.bfloat16)]
    if torch.cuda.is_available():
        modes += [(torch.device("cuda"), torch.float16), (torch.device("cuda"), torch.bfloat16)]
    return modes


@check("autocast")
def check_autocast(subj: Subject) -> str:
    """Under autocast (bf16 on CPU; fp16 and bf16 on CUDA when present) the value is a finite float."""
    cases = []
    for device, dtype in autocast_modes():
        case = f"{str(dtype).removeprefix('torch.')} autocast on {device.type}"
        loss, m = build(subj, SAME)
        loss.to(device)
        student, teacher, batch = step_inputs(m, 0, dtype=dtype, device=device)
        with torch.autocast(device.type, dtype=dtype):
            v = value(loss, student, teacher, batch)
        if not v.is_floating_point():
            raise ConformanceError(f"value has dtype {v.dtype} under {case}")
        require_finite(v, case)
        backward_finite(v, [*named_tensors(student, "student"), *_trainable(loss)], case)
        cases.append(case)
    return ", ".join(cases)


@check("state-dict")
def check_state_dict(subj: Subject) -> None:
    """A fresh instance loaded with the state_dict of a prepared, stepped one gives the same value."""
    trained, m = build(subj, SAME)
    value(trained, *step_inputs(m, 0))  # memory banks and running estimates move
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)
    buffer.seek(0)
    try:
        state = torch.load(buffer, weights_only=True)
    except Exception as exc:
        raise ConformanceError("the state_dict does not load with torch.load(weights_only=True), as checkpoints "
                               f"are read: {describe(exc, subj.cls)}") from exc
    torch.manual_seed(1)
    fresh = subj.cls(m.ctx, **subj.params)
    resumed = "training resumed from a checkpoint skips prepare" if subj.prepares else "a checkpoint restores only it"
    try:
        fresh.load_state_dict(state)
        torch.manual_seed(2)  # the same global RNG state for both: this check is about state, not randomness
        got = value(fresh.train(), *step_inputs(m, 1)).detach()
    except Exception as exc:
        raise ConformanceError(f"a fresh instance loaded with the state_dict fails ({describe(exc, subj.cls)}); "
                               f"{resumed}, so the state must live in parameters or buffers") from exc
    torch.manual_seed(2)
    expected = value(trained, *step_inputs(m, 1)).detach()
    if not torch.equal(expected, got):
        raise ConformanceError(f"value {expected.item():.6g} before and {got.item():.6g} after the round trip; "
                               f"{resumed}, so the state must live in parameters or buffers")


FIELD_NEEDS = {"logits": Need.LOGITS, "features": Need.FEATURES, "embedding": Need.EMBEDDING,
               "feature_map": Need.FEATURE_MAP,
               "preact_features": Need.PREACT_FEATURES, "strong": Need.STRONG_VIEW, "labels": Need.LABELS,
               "indices": Need.INDICES}


class _Reads:
    """Mixin for the contract's dataclasses: remembers which fields a loss read."""

    def __init__(self, *args: Any):
        object.__setattr__(self, "reads", set())
        super().__init__(*args)

    def __getattribute__(self, name: str) -> Any:
        if name in FIELD_NEEDS:
            object.__getattribute__(self, "reads").add(name)
        return object.__getattribute__(self, name)


class _WatchedOutputs(_Reads, Outputs):
    pass


class _WatchedBatch(_Reads, Batch):
    pass


@check("needs")
def check_needs(subj: Subject) -> None:
    """Reads only the outputs it declares in needs; warns about declared needs it never reads."""
    needs = subj.cls.needs
    if not isinstance(needs, frozenset) or not all(isinstance(n, Need) for n in needs):
        raise ConformanceError(f"needs must be a frozenset of Need members, got {needs!r}")
    loss, m = build(subj, SAME)
    full_student, full_teacher, full_batch = step_inputs(m, 0)
    student, teacher = (_WatchedOutputs(*vars(visible(o, needs)).values()) for o in (full_student, full_teacher))
    batch = _WatchedBatch(*vars(full_batch).values())
    failure = None
    try:
        value(loss, student, teacher, batch)
    except Exception as exc:  # judged after the reads: reading an undeclared output explains most errors here
        failure = exc
    reads = [(side, field) for side, seen in (("student", student.reads), ("teacher", teacher.reads)) for field in seen]
    undeclared = sorted(f"{side}.{field}" for side, field in reads if FIELD_NEEDS[field] not in needs)
    if undeclared:
        missing = ", ".join(sorted({f"Need.{FIELD_NEEDS[u.split('.')[1]].name}" for u in undeclared}))
        after = f"; it then fails with {describe(failure, subj.cls)}" if failure else ""
        raise ConformanceError(f"reads {', '.join(undeclared)} without declaring {missing}: the harness passes only "
                               f"declared outputs{after}")
    if failure is not None:
        raise failure
    read = {FIELD_NEEDS[field] for field in student.reads | teacher.reads | batch.reads}
    concerns = [f"declares Need.{n.name} but never reads {n.value}" for n in sorted(needs, key=lambda n: n.value)
                if n not in read and n is not Need.STRONG_VIEW]  # the strong view is read only when a run has one
    if concerns:
        warnings.warn(ConformanceWarning("; ".join(concerns)))


@check("prepare")
def check_prepare(subj: Subject) -> str:
    """prepare runs on a tiny teacher, student and data, leaves the teacher as it was, and training follows."""
    if not subj.prepares:
        return "no prepare stage"
    loss, m = build(subj, SAME)  # the teacher that prepare saw
    pristine = _pristine(world_for(subj, SAME)).teacher.state_dict()
    changed = [k for k, v in m.teacher.state_dict().items() if not torch.equal(v, pristine[k])]
    if changed:
        raise ConformanceError(f"prepare changed the teacher ({_some(changed)}); one teacher serves every loss "
                               "of a run")
    v = value(loss, *model_step(m, *m.data[0]))
    require_finite(v, "the first step after prepare")
    return f"prepare took {_PREPARED[_key(subj, world_for(subj, SAME))][2]:.1f} s"


# -- running them ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckResult:
    check: str
    description: str
    status: str  # "pass", "warn" (passed, with a concern) or "fail"
    detail: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status != "fail"


def _attempt(chk: Check, subj: Subject) -> CheckResult:
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught, isolated():
        warnings.simplefilter("always")
        try:
            status, detail = "pass", chk.run(subj) or ""
        except ConformanceError as exc:
            status, detail = "fail", str(exc)
        except Exception as exc:  # the loss raised: report where, and go on with the next check
            status, detail = "fail", describe(exc, subj.cls)
    concerns = [str(w.message) for w in caught if issubclass(w.category, ConformanceWarning)]
    if concerns and status == "pass":
        status, detail = "warn", "; ".join([*concerns, detail] if detail else concerns)
    return CheckResult(chk.name, chk.description, status, detail, time.perf_counter() - started)


def run_checks(loss: str | type[DistillLoss], params: Mapping[str, Any] | None = None) -> list[CheckResult]:
    """Every check on one loss. An unknown name or a broken plugin raises ``ConfigError``."""
    subj = subject(loss, params)
    return [_attempt(chk, subj) for chk in CHECKS]


def parametrize_with_checks(losses: Iterable[str | type[DistillLoss]]):
    """pytest decorator: one ``(loss, check)`` case per loss and check, with ids such as ``kd-finite``."""
    import pytest  # needed only by test suites

    cases = [pytest.param(loss, chk, id=f"{loss if isinstance(loss, str) else loss.__name__}-{chk.name}")
             for loss in losses for chk in CHECKS]
    return pytest.mark.parametrize(("loss", "check"), cases)
