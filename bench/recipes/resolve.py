"""Recipes (data) -> resolved, validated, hashable run settings.

Recipe files live in ``bench/recipes``: ``datasets/<name>.toml`` (schedule, per-student and
per-loss overrides, named protocols), ``losses/*.toml`` (each loss's weight, CE weight and
hyperparameters with their source) and ``pairs.toml`` (named teacher -> student pairs). Command-line
values override recipes. Everything that can change a number ends up in a ``RunSpec``, whose
content hash names the run.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import hashlib
import inspect
import json
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from bench.recipes.settings import check_in_range
from bench.training.schedule import SCHEDULES  # up a layer: a recipe may name only a schedule training has
from losses import LOSSES
from registry import ConfigError

RECIPES = Path(str(resources.files("bench") / "recipes"))
STANDARD_PROTOCOL = "standard"
# each loss trains its authors' schedule: [protocols.authors.losses.<loss>] of the dataset recipe, then the
# pair's losses.<loss>.train (a loss without either trains the protocol's own settings)
AUTHORS_PROTOCOL = "authors"


def load_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid recipe file {path}: {exc}") from None


@cache
def loss_recipes() -> dict[str, dict[str, Any]]:
    """Every loss table of ``recipes/losses/*.toml``; a loss defined twice is an error."""
    merged: dict[str, dict[str, Any]] = {}
    for path in sorted((RECIPES / "losses").glob("*.toml")):
        for name, table in load_toml(path).items():
            if name in merged:
                raise ConfigError(f"loss '{name}' has two recipes (second one in {path.name})")
            merged[name] = table
    return merged


@cache
def pair_catalog() -> dict[str, dict[str, Any]]:
    return load_toml(RECIPES / "pairs.toml")


def dataset_recipe(dataset: str) -> dict[str, Any]:
    path = RECIPES / "datasets" / f"{dataset}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in (RECIPES / "datasets").glob("*.toml"))
        raise ConfigError(f"no recipe for dataset '{dataset}'; recipes exist for: {', '.join(known)}")
    return load_toml(path)


# -- pairs -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pair:
    name: str
    teacher: str
    student: str
    teacher_weights: str | None = None  # pretrained timm weights instead of training the teacher


def resolve_pair(pair: str | None, teacher: str | None, student: str | None, recipe: Mapping[str, Any]) -> Pair:
    """``--pair`` from the catalog, or ``--teacher``/``--student`` (each defaulting to the recipe's pair)."""
    catalog = pair_catalog()
    if pair is not None and (teacher or student):
        raise ConfigError("give either --pair or --teacher/--student, not both")
    name = pair or recipe["default_pair"]
    if name not in catalog:
        raise ConfigError(f"unknown pair '{name}'; expected one of: {', '.join(sorted(catalog))}")
    default_teacher, default_student = name.split("-")
    entry = catalog[name]
    if pair is None and (teacher or student):
        teacher, student = teacher or default_teacher, student or default_student
        if teacher != default_teacher:  # another teacher: the catalog's pretrained weights do not apply
            entry = catalog.get(f"{teacher}-{student}", {})
        return Pair(f"{teacher}-{student}", teacher, student, entry.get("teacher_weights"))
    return Pair(name, default_teacher, default_student, entry.get("teacher_weights"))


# -- training schedule -------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    milestones: tuple[int, ...]
    gamma: float
    nesterov: bool = False
    # bench.training.schedule: "step" (x gamma at milestones) or "cosine" (to 0, per batch); out of the repr,
    # which teacher cache keys hash, so step-schedule teachers keep their keys (see ``identity``)
    schedule: str = field(default="step", repr=False)
    # gradient clipping: the students' total gradient norm clipped to this before each step (None: none);
    # out of the repr too, so teacher keys stay as they were, and out of a run id unless set
    clip_grad: float | None = field(default=None, repr=False)

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not 0 < self.lr < math.inf:
            raise ConfigError(f"lr must be positive and finite, got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule '{self.schedule}'; expected one of: {', '.join(SCHEDULES)}")
        if self.clip_grad is not None and not 0 < self.clip_grad < math.inf:
            raise ConfigError(f"clip_grad must be a positive, finite gradient norm, got {self.clip_grad}")

    def identity(self) -> dict[str, Any]:
        """What a cached result trained with these settings is keyed by; the step schedule, the only one
        there once was, stays implicit so that keys made before schedules existed still match."""
        key = {"train": self} if self.schedule == "step" else {"train": self, "schedule": self.schedule}
        return key if self.clip_grad is None else {**key, "clip_grad": self.clip_grad}


def loss_schedule(recipe: Mapping[str, Any], protocol: str, loss: str,
                  pair_settings: Mapping[str, Any]) -> dict[str, Any]:
    """The training settings ``loss``'s authors used, under ``--protocol authors`` only: the dataset recipe's
    ``[protocols.authors.losses.<loss>]`` <- the pair's ``losses.<loss>.train``."""
    if protocol != AUTHORS_PROTOCOL:
        return {}
    per_loss = recipe.get("protocols", {}).get(AUTHORS_PROTOCOL, {}).get("losses", {})
    return {**per_loss.get(loss, {}), **pair_settings.get(loss, {}).get("train", {})}


def resolve_train(recipe: Mapping[str, Any], protocol: str, student: str | None,
                  overrides: Mapping[str, Any], schedule: Mapping[str, Any] | None = None) -> TrainSettings:
    """``[train]`` <- ``[protocols.<protocol>]`` <- ``[students.<student>]`` (or ``[teacher]``) <- the
    protocol's own ``teacher`` table (for the teacher) <- the loss's own ``schedule``
    (:func:`loss_schedule`, for a student) <- CLI.

    When the CLI changes ``epochs`` without giving milestones, the recipe's milestones are scaled
    to the new length, so a short run keeps the schedule's shape.
    """
    protocols = recipe.get("protocols", {})
    if protocol != STANDARD_PROTOCOL and protocol not in protocols:
        raise ConfigError(f"unknown protocol '{protocol}'; expected one of: "
                          f"{', '.join([STANDARD_PROTOCOL, *sorted(protocols)])}")
    chosen = dict(protocols.get(protocol, {}))
    protocol_teacher = chosen.pop("teacher", {})
    chosen.pop("losses", None)
    settings = {**recipe["train"], **chosen}
    settings.update(recipe.get("teacher", {}) if student is None else recipe.get("students", {}).get(student, {}))
    settings.update(protocol_teacher if student is None else schedule or {})
    given = {k: v for k, v in overrides.items() if v is not None}
    if "epochs" in given and "milestones" not in given:
        scale = given["epochs"] / settings["epochs"]
        given["milestones"] = sorted({round(m * scale) for m in settings["milestones"]} - {0})
    settings.update(given)
    fields = {f.name for f in dataclasses.fields(TrainSettings)}
    unknown = set(settings) - fields
    if unknown:
        raise ConfigError(f"unknown training setting(s) {', '.join(sorted(unknown))}; expected: {', '.join(sorted(fields))}")
    settings["milestones"] = tuple(settings["milestones"])
    return TrainSettings(**settings)


def resolve_validation(recipe: Mapping[str, Any], requested: int | None) -> int | None:
    """Images of the validation split carved from the training split: ``--validation-size`` (0: none, the
    whole training split trains, as runs before validation splits did), else the recipe's ``[validation] size``."""
    size = recipe.get("validation", {}).get("size") if requested is None else requested
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise ConfigError(f"a validation size is a whole number of images, 0 for none; got {size!r}")
    return size or None


# -- losses ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LossSpec:
    name: str
    provider: str
    provider_version: str
    weight: float
    ce_weight: float
    params: Mapping[str, Any] = field(default_factory=dict)


def hyperparameters(cls: type) -> dict[str, inspect.Parameter]:
    """The keyword-only constructor arguments of a loss class: its hyperparameters."""
    try:
        signature = inspect.signature(cls.__init__, eval_str=True)
    except Exception:  # a plugin's annotation that does not evaluate: its types go unchecked
        signature = inspect.signature(cls.__init__)
    return {n: p for n, p in signature.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def declared_type(parameter: inspect.Parameter) -> Any:
    """A hyperparameter's annotation, else the type of its default; None when it declares neither."""
    if parameter.annotation is not inspect.Parameter.empty:
        return parameter.annotation
    return None if parameter.default in (inspect.Parameter.empty, None) else type(parameter.default)


def fits(value: Any, expected: Any) -> bool:
    """Whether a recipe or ``--set`` value has the declared type (an int is a float; a float is finite)."""
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if expected in (None, Any):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    container = origin or expected
    if container in (list, tuple, collections.abc.Sequence):
        return isinstance(value, (list, tuple)) and all(fits(item, args[0] if args else None) for item in value)
    if container in (dict, collections.abc.Mapping):
        return isinstance(value, dict)
    return not isinstance(expected, type) or isinstance(value, expected)


def _type_name(expected: Any) -> str:
    return {float: "a finite number", int: "an integer", bool: "true or false", str: "a string"}.get(
        expected, getattr(expected, "__name__", str(expected)))


def pair_loss_settings(pair: Pair, dataset: str) -> dict[str, dict[str, Any]]:
    """The catalog's ``losses.<loss>`` of ``pair``: settings tuned for the pair on its own dataset only."""
    entry = pair_catalog().get(pair.name, {})
    return entry.get("losses", {}) if entry.get("dataset") == dataset else {}


def resolve_loss(name: str, recipe: Mapping[str, Any], overrides: Mapping[str, Any],
                 pair_settings: Mapping[str, Any] | None = None) -> LossSpec:
    """Loss recipe <- dataset recipe ``[losses.<name>]`` <- the pair's ``losses.<name>``
    (:func:`pair_loss_settings`) <- CLI ``--set name.key=value``.

    Keys ``weight`` and ``ce_weight`` set the loss weights; every other key is a hyperparameter,
    checked against the loss's constructor and its valid range (``bench.recipes.settings``). A plugin loss without a recipe uses its own defaults
    and weights 1.0 / 1.0.
    """
    entry = LOSSES.entry(name)
    cls = entry.load()
    merged: dict[str, Any] = {"weight": 1.0, "ce_weight": 1.0}
    layers = (loss_recipes(), recipe.get("losses", {}), pair_settings or {})
    for layer in (layer.get(entry.name, {}) for layer in layers):
        merged.update({k: v for k, v in layer.items() if k not in ("params", "source", "train")})
        merged.update(layer.get("params", {}))
    merged.update(overrides)
    accepted = hyperparameters(cls)
    unknown = set(merged) - set(accepted) - {"weight", "ce_weight"}
    if unknown:
        raise ConfigError(f"loss '{entry.name}' has no hyperparameter {', '.join(sorted(unknown))}; "
                          f"expected: {', '.join(['weight', 'ce_weight', *accepted]) }")
    declared = {"weight": float, "ce_weight": float, **{n: declared_type(p) for n, p in accepted.items()}}
    for key, value in merged.items():
        if not fits(value, declared[key]):
            raise ConfigError(f"{entry.name}.{key} expects {_type_name(declared[key])}, got {value!r}")
        check_in_range(entry.name, key, value)
    weight, ce_weight = float(merged.pop("weight")), float(merged.pop("ce_weight"))
    missing = [n for n, p in accepted.items() if n not in merged and p.default is inspect.Parameter.empty]
    if missing:
        raise ConfigError(f"loss '{entry.name}' needs {', '.join(missing)}; set it with "
                          f"--set {entry.name}.{missing[0]}=VALUE")
    params = {n: merged.get(n, p.default) for n, p in accepted.items()}
    return LossSpec(entry.name, entry.provider, entry.version, weight, ce_weight, params)


def parse_overrides(assignments: list[str], losses: list[str], option: str = "--set") -> dict[str, dict[str, Any]]:
    """``["kd.T=2", "crd.weight=0.5"]`` -> ``{"kd": {"T": 2}, ...}``; values are read as TOML."""
    parsed: dict[str, dict[str, Any]] = {}
    for text in assignments:
        target, sep, value = text.partition("=")
        loss, dot, key = target.partition(".")
        if not (sep and dot and key):
            raise ConfigError(f"{option} expects LOSS.KEY=VALUE, got '{text}'")
        loss = LOSSES.canonical(loss)
        if loss not in losses:
            raise ConfigError(f"{option} names loss '{loss}', which is not in --losses ({', '.join(losses)})")
        try:
            parsed.setdefault(loss, {})[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            parsed.setdefault(loss, {})[key] = value  # a bare word is a string
    return parsed


# -- the whole run -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSpec:
    """One (dataset, pair, loss, seed) run: everything that can change its numbers."""

    dataset: str
    train_split: str | None
    pair: Pair
    teacher_source: str  # "trained:<hash>", "pretrained:<weights>" or "checkpoint:<sha256>"
    loss: LossSpec
    seed: int
    protocol: str
    train: TrainSettings
    student_stem: str
    teacher_seed: int | None = None  # one teacher for every seed of a comparison; None: each seed trains its own
    strong_view: bool = False  # every batch also as a strongly augmented view (MLKD's recipe, bench.data.views)
    validation_size: int | None = None  # images carved from the training split for selection (bench.data.validation)
    train_size: int | None = None  # students train on this many of their training images (a tuning trial's budget)
    tuned: str | None = None  # the search (bench tune) whose settings this run applies (bench run --tuned)

    def as_dict(self, with_seed: bool = True) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["loss"].pop("provider_version")  # recorded with the result; a version bump keeps the hash
        if data["teacher_seed"] is None:
            data.pop("teacher_seed")  # runs with a per-seed teacher keep the ids they always had
        if not data["strong_view"]:
            data.pop("strong_view")  # and runs of one view, the only kind there was
        if data["validation_size"] is None:
            data.pop("validation_size")  # and runs on the whole training split, the only kind there was
        for key in ("train_size", "tuned"):
            if data[key] is None:
                data.pop(key)  # and runs on all their training images with their recipe's settings
        if data["train"]["schedule"] == "step":
            data["train"].pop("schedule")  # so do runs of the step schedule, the only one there was
        if data["train"]["clip_grad"] is None:
            data["train"].pop("clip_grad")  # and runs without gradient clipping
        if not with_seed:
            data.pop("seed")
        return data

    @property
    def teacher_trained_with(self) -> int:
        """The seed the teacher of this run is trained with."""
        return self.seed if self.teacher_seed is None else self.teacher_seed

    @property
    def run_id(self) -> str:
        return content_hash(self.as_dict())

    @property
    def recipe_hash(self) -> str:
        return content_hash(self.as_dict(with_seed=False))


def content_hash(data: Any) -> str:
    """Short stable hash of JSON-able data (keys sorted)."""
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
