"""The one contract every distillation loss implements.

A loss is an ``nn.Module`` that

* declares what it reads (``needs``) so the harness computes exactly that and nothing more;
* is built from the probed shapes of both models (``LossContext``) and owns any trainable parts
  (connectors, projection heads): they are optimised together with its student;
* may implement ``prepare`` — a stage before training that sees the teacher, the student and the
  training data (AB/FT/FSP initialisation, WKD-L's class-cost matrix, ...);
* may define its student's evaluation logits (``evaluation_logits`` from ``evaluation_needs``:
  SimKD's, through the teacher's classifier); only a loss that does is asked at evaluation;
* returns a scalar, or a dict of named scalar terms that the harness sums and logs one by one;
* under a second, strongly augmented view (``--strong-view``) is called once per view and its terms
  averaged, unless it reads both views itself (``Need.STRONG_VIEW``: MLKD);
* may shape its student's optimizer and step (``build_optimizer``, ``optimizer_step``: DOT's two
  momenta); the defaults are the recipe's SGD and one backward pass of the weighted sum.

The harness trains ``ce_weight * CE(student) + weight * loss`` (CE averaged over the views); both weights and every
hyperparameter come from recipe data (``bench/recipes/losses/*.toml``), never from constants here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Callable, ClassVar, Iterable, Mapping

import torch
from torch import Tensor, nn

from registry import ConfigError, Registry


class Need(str, Enum):
    """What a loss can ask the harness for."""

    LOGITS = "logits"  # class scores, [B, num_classes]
    FEATURES = "features"  # every stage's feature map, NCHW, from timm's forward_intermediates
    EMBEDDING = "embedding"  # pooled pre-logits features, [B, D] (timm forward_head(pre_logits=True))
    # the map ``embedding`` is pooled from, NCHW (timm forward_features: after a model's head conv, where it has one)
    FEATURE_MAP = "feature_map"
    LABELS = "labels"  # ground-truth class of each example
    INDICES = "indices"  # position of each example in the training set (CRD's memory bank)
    # every stage's output before its final ReLU, NCHW, one per stage (the stem excluded): the CIFAR zoo's
    # ``forward_preact_intermediates`` (OFD)
    PREACT_FEATURES = "preact_features"
    # both models' outputs on the batch's second, strongly augmented view (``Outputs.strong``) when the run has one
    # (``bench run --strong-view``: MLKD's recipe); a loss that does not ask is applied to each view in turn
    STRONG_VIEW = "strong_view"

    @classmethod
    def parse(cls, needs: Iterable[str]) -> frozenset["Need"]:
        valid = ", ".join(n.value for n in cls)
        try:
            return frozenset(cls(n) for n in needs)
        except ValueError as exc:
            raise ConfigError(f"{exc}; a loss may need: {valid}") from None


MODEL_NEEDS = frozenset({Need.LOGITS, Need.FEATURES, Need.EMBEDDING, Need.PREACT_FEATURES, Need.FEATURE_MAP})


@dataclass
class Outputs:
    """One model's forward pass, holding only what some loss asked for."""

    logits: Tensor | None = None
    features: tuple[Tensor, ...] = ()
    embedding: Tensor | None = None
    preact_features: tuple[Tensor, ...] = ()
    strong: "Outputs | None" = None  # the same model's outputs on the strong view (Need.STRONG_VIEW), if the run has one
    feature_map: Tensor | None = None


@dataclass(frozen=True)
class ModelShapes:
    """Per-example shapes probed from one model on one input size."""

    features: tuple[tuple[int, int, int], ...]  # (C, H, W) of each stage
    embedding: int
    num_classes: int
    preact_features: tuple[tuple[int, int, int], ...] = ()  # empty when the model gives none
    model: str = ""  # the model's name, for error messages
    feature_map: tuple[int, ...] = ()  # (C, H, W) of the map the embedding is pooled from


@dataclass(frozen=True)
class LossContext:
    """Everything a loss may size itself from."""

    student: ModelShapes
    teacher: ModelShapes
    num_train: int  # examples in the training set (memory banks)


@dataclass
class Batch:
    """Per-step information besides the two models' outputs."""

    labels: Tensor
    indices: Tensor
    epoch: int  # 0-based; losses with warm-up (DKD) read it
    generator: torch.Generator  # this student's randomness for this step (reproducible, resumable)
    epochs: int | None = None  # this student's number of epochs; schedules over training (WKD's decay) read it
    step: int = 0  # 0-based within the epoch; a warm-up shorter than an epoch (losses.warmup) reads it
    steps: int | None = None  # steps per epoch, when known


@dataclass
class Preparation:
    """What a loss's optional preparation stage can see, before training starts.

    ``batches()`` yields one training epoch of ``(images, labels, indices)`` on ``device`` (augmented,
    in a fixed shuffled order, the ragged last batch dropped: what an initialisation stage trains on);
    ``in_order()`` yields every training image once, in the dataset's order, under the test transform
    (no augmentation), the ragged last batch kept: what a statistic of the training set is built from
    (WKD-L's class cost, as its authors build it). ``extract(model, images, needs)`` runs a model and
    returns its ``Outputs``. The teacher is frozen; the student may be trained here (AB/FSP
    initialisation stages do that).
    """

    teacher: nn.Module
    student: nn.Module
    batches: Callable[[], Iterable[tuple[Tensor, Tensor, Tensor]]]
    in_order: Callable[[], Iterable[tuple[Tensor, Tensor, Tensor]]]
    extract: Callable[[nn.Module, Tensor, frozenset[Need]], Outputs]
    device: torch.device
    generator: torch.Generator
    cache_dir: Path  # persistent, keyed by teacher and dataset: reuse work across runs
    params: Mapping[str, object] = field(default_factory=dict)  # the recipe's training settings


class DistillLoss(nn.Module):
    """Base class of every distillation loss (see the module docstring for the contract)."""

    needs: ClassVar[frozenset[Need]] = frozenset({Need.LOGITS})
    description: ClassVar[str] = ""
    # True when the loss relates examples of the batch to each other (similarities, transport across the
    # batch, a memory bank): under several processes the harness then hands it the global batch
    batchwise: ClassVar[bool] = False
    # what ``evaluation_logits`` reads, for a loss that redefines its student's evaluation logits (SimKD)
    evaluation_needs: ClassVar[frozenset[Need]] = frozenset()

    def __init__(self, ctx: LossContext):
        super().__init__()
        self.ctx = ctx

    def prepare(self, prep: Preparation) -> None:
        """Optional stage before training; the default does nothing."""

    def evaluation_logits(self, student: Outputs) -> Tensor:
        """The student's class scores at evaluation, from its outputs of ``evaluation_needs``; the default
        is the network's own logits. Only a loss that overrides this is asked (``defines_evaluation``)."""
        return student.logits

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> Tensor | dict[str, Tensor]:
        raise NotImplementedError

    def build_optimizer(self, params: list[nn.Parameter], *, lr: float, momentum: float, weight_decay: float,
                        nesterov: bool) -> torch.optim.Optimizer:
        """The optimizer of the student's network and this loss's parameters, from the recipe's SGD
        settings; the default is that SGD. Override it with ``optimizer_step`` when a method trains
        with its own update rule (DOT)."""
        fused = {"fused": True} if params[0].device.type == "cuda" else {}
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                               **fused)

    def optimizer_step(self, optimizer: torch.optim.Optimizer, task: Tensor, distillation: Tensor,
                       average_gradients: Callable[[list[nn.Parameter]], None]) -> None:
        """One step of the student on ``task`` (``ce_weight * CE``) and ``distillation`` (``weight`` times
        the sum of this loss's terms); ``average_gradients`` averages gradients over processes.

        The default descends their sum with one backward pass.
        """
        optimizer.zero_grad(set_to_none=True)
        (task + distillation).backward()
        average_gradients(optimized(optimizer))
        optimizer.step()


def optimized(optimizer: torch.optim.Optimizer) -> list[nn.Parameter]:
    """Every parameter an optimizer updates, in its order."""
    return [p for group in optimizer.param_groups for p in group["params"]]


def defines_evaluation(loss: DistillLoss) -> bool:
    """True when ``loss`` redefines its student's evaluation logits (SimKD: through the teacher's classifier)."""
    return type(loss).evaluation_logits is not DistillLoss.evaluation_logits


def stage_index(shapes: ModelShapes, stage: int) -> int:
    """Normalise a (possibly negative) stage index, with a clear error when out of range."""
    count = len(shapes.features)
    if not -count <= stage < count:
        raise ConfigError(f"stage {stage} does not exist; the model has stages 0..{count - 1} (or -{count}..-1)")
    return stage % count


def total(terms: Tensor | Mapping[str, Tensor]) -> Tensor:
    """Sum of a loss's named terms (or the scalar itself)."""
    return terms if isinstance(terms, Tensor) else sum(terms.values())


LOSSES: "Registry[type[DistillLoss]]" = Registry("loss", entry_point_group="distillbench.losses")
register_loss = LOSSES.register
