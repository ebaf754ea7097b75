"""Lv, Yang & Li, "Wasserstein Distance Rivals Kullback-Leibler Divergence for Knowledge
Distillation" (NeurIPS 2024): WKD-L on logits, WKD-F on features.

KL compares two class distributions bin by bin; a Wasserstein distance can move mass between
*related* classes at a low cost, and between feature distributions whose supports do not overlap.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, Preparation, register_loss, stage_index
from losses.checks import count, non_negative, positive
from losses.connectors import conv_regressor
from losses.ot.class_cost import CLASS_COSTS, COST_FEATURES, cached_class_similarity
from losses.ot.functional import COVARIANCES, gaussian_w2_terms, sinkhorn_histograms
from losses.ot.options import choice

AUTHORS_GUARD = 1e-8  # WKD.py adds it to every cost entry and to Sinkhorn's denominators

def cosine_decay(batch: Batch, decay_from: int) -> float:
    """The authors' weight schedule: 1 up to epoch ``decay_from``, then half a cosine to 0 at the last epoch.

    Epochs count from 1 as in the authors' trainer (``batch.epoch`` counts from 0); ``decay_from``
    at or beyond the number of epochs keeps the weight constant, as does a batch that does not
    know the number of epochs.
    """
    epoch = batch.epoch + 1
    if batch.epochs is None or epoch <= decay_from:
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * (epoch - decay_from) / (batch.epochs - decay_from)))


@register_loss("wkd-l")
class WKDLogit(DistillLoss):
    """WKD-L: entropic OT between the student's and teacher's non-target class probabilities.

    As in the authors' code, the target class is split off: ``target`` is the teacher-weighted
    cross-entropy on the true class, ``-p_t[y] log p_s[y]`` (temperature 1), and ``wasserstein``
    is ``wasserstein_weight`` (their gamma) times the Sinkhorn transport cost between the two
    distributions over the other classes (temperature ``T``), ``iters`` fixed iterations from a
    uniform start. The true class gets zero mass and a zero start (see
    ``losses.ot.functional.sinkhorn_histograms``), which is exactly the authors' removal of its
    row and column, without building a per-example cost matrix. The ground cost is
    ``1 - exp(-sharpen * (1 - similarity))`` (``sharpen=0``: ``1 - similarity``), with the class
    similarity computed from the teacher in ``prepare`` (see ``losses.ot.class_cost``: the
    authors' paired linear CKA, on ``cost_features``), plus the authors' 1e-8 on every entry, which
    also guards Sinkhorn's denominators. ``wasserstein_weight`` follows the authors'
    cosine decay from epoch ``decay_from`` (:func:`cosine_decay`); the target term does not decay.

    Footprint per step: the ``[C, C]`` kernel and kernel-times-cost, plus ``2 * iters`` ``[B, C]``
    scalings kept for autograd; no ``[B, C, C]`` tensor (C=1000, B=256, 10 iterations: ~28 MB).

    Reference implementation: JiamingLv/WKD, mdistiller/distillers/WKD.py
    (wkd_logit_loss_with_speration), tools/generate_class_proto.py, tools/generate_cost_matrix.py.
    Deviations: the class cost uses the first ``samples_per_class`` images of each class in the
    dataset's order, under the test transform, as the authors' CIFAR-100 script (every image); their
    ImageNet script keeps the first ones of a seeded shuffle. The cost is computed in ``prepare``
    instead of loaded from a file.
    """

    needs = frozenset({Need.LOGITS, Need.LABELS})
    description = "Sinkhorn OT of non-target class probabilities over a teacher class cost (Lv et al. 2024)"

    def __init__(
        self,
        ctx: LossContext,
        *,
        T: float,
        eps: float,
        iters: int,
        class_cost: str,
        cost_features: str,
        samples_per_class: int,
        sharpen: float,
        wasserstein_weight: float,
        decay_from: int,
    ):
        super().__init__(ctx)
        positive("T", T)
        positive("eps", eps)
        count("iters", iters, 1)
        choice("class_cost", class_cost, CLASS_COSTS)
        choice("cost_features", cost_features, COST_FEATURES)
        count("samples_per_class", samples_per_class, 1)
        non_negative("sharpen", sharpen)
        non_negative("wasserstein_weight", wasserstein_weight)
        count("decay_from", decay_from, 0)
        self.T, self.eps, self.iters = T, eps, iters
        self.class_cost, self.cost_features, self.samples_per_class = class_cost, cost_features, samples_per_class
        self.sharpen, self.wasserstein_weight, self.decay_from = sharpen, wasserstein_weight, decay_from
        # Filled by prepare(); a buffer, so a checkpoint carries it (resumed training skips prepare).
        self.register_buffer("cost", torch.zeros(ctx.teacher.num_classes, ctx.teacher.num_classes))

    def prepare(self, prep: Preparation) -> None:
        num_classes = self.ctx.teacher.num_classes
        similarity = cached_class_similarity(prep, self.class_cost, self.cost_features, num_classes, self.samples_per_class)
        distance = (1 - similarity).clamp_min(0).fill_diagonal_(0)
        self.cost.copy_((1 - torch.exp(-self.sharpen * distance) if self.sharpen else distance) + AUTHORS_GUARD)

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> dict[str, Tensor]:
        s_logits, t_logits = student.logits.float(), teacher.logits.float()
        labels = batch.labels[:, None]
        target = -(F.softmax(t_logits, 1).gather(1, labels) * F.log_softmax(s_logits, 1).gather(1, labels)).mean()
        is_target = F.one_hot(batch.labels, s_logits.shape[1]).bool()
        p_s = F.softmax(s_logits.masked_fill(is_target, float("-inf")) / self.T, 1)
        p_t = F.softmax(t_logits.masked_fill(is_target, float("-inf")) / self.T, 1)
        distances = sinkhorn_histograms(p_s, p_t, self.cost, eps=self.eps, iters=self.iters, guard=AUTHORS_GUARD)
        weight = self.wasserstein_weight * cosine_decay(batch, self.decay_from)
        return {"target": target, "wasserstein": weight * distances.mean()}


def grid_cells(feature: Tensor, grid: int) -> list[Tensor]:
    """The ``grid x grid`` cells of an NCHW map as clouds ``[B, positions, C]``, with adaptive pooling's bins."""
    height, width = feature.shape[-2:]

    def bins(size: int) -> list[tuple[int, int]]:
        return [(i * size // grid, -(-(i + 1) * size // grid)) for i in range(grid)]

    return [feature[..., h0:h1, w0:w1].flatten(2).mT for h0, h1 in bins(height) for w0, w1 in bins(width)]


@register_loss("wkd-f")
class WKDFeature(DistillLoss):
    """WKD-F: Gaussian 2-Wasserstein distance between per-example feature distributions.

    The student's map at ``stage`` goes through the authors' projector, ``ConvReg``
    (``losses.connectors.conv_regressor``: conv -> BN -> ReLU, the conv also bringing the map to
    the teacher's resolution); each of the ``grid x grid`` cells of both maps (the authors' spatial
    grid; 1: the whole map) is summarised by the mean and covariance of its channel vectors, with
    the authors' unbiased variance (``n - 1``, as ``torch.var``) plus ``reg``. The loss is
    ``mean_weight * |mu_s - mu_t|^2 + covariance part`` of the closed-form W2^2 (see
    ``losses.ot.functional.gaussian_w2``), summed over channels and averaged over cells and the
    batch, times the authors' cosine decay from epoch ``decay_from`` (:func:`cosine_decay`).
    ``covariance="diag"`` is the authors' (the covariance part is then ``|sigma_s - sigma_t|^2``);
    ``"full"`` uses the Bures term.

    Reference implementation: JiamingLv/WKD, mdistiller/distillers/WKD.py (wkd_feature_loss,
    adaptive_avg_std_pool2d), mdistiller/distillers/_common.py (ConvReg).
    Deviations: a cell of one position has variance 0 here (the authors' unbiased variance is NaN
    there); the authors' ImageNet "bottleneck" projector is not offered; ``covariance="full"`` is an
    option the authors do not have.
    """

    needs = frozenset({Need.FEATURES})
    description = "Gaussian W2 between per-example feature mean/covariance (Lv et al. 2024)"

    def __init__(self, ctx: LossContext, *, stage: int, mean_weight: float, covariance: str, reg: float, grid: int,
                 decay_from: int):
        super().__init__(ctx)
        non_negative("mean_weight", mean_weight)
        choice("covariance", covariance, COVARIANCES)
        non_negative("reg", reg)
        count("grid", grid, 1)
        count("decay_from", decay_from, 0)
        self.s_stage = stage_index(ctx.student, stage)
        self.t_stage = stage_index(ctx.teacher, stage)
        self.projector = conv_regressor(ctx.student.features[self.s_stage], ctx.teacher.features[self.t_stage])
        self.mean_weight, self.covariance, self.reg = mean_weight, covariance, reg
        self.grid, self.decay_from = grid, decay_from

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> dict[str, Tensor]:
        s_map = self.projector(student.features[self.s_stage])
        t_map = teacher.features[self.t_stage]
        terms = torch.stack([
            gaussian_w2_terms(s_cell, t_cell, covariance=self.covariance, reg=self.reg, unbiased=True)
            for s_cell, t_cell in zip(grid_cells(s_map, self.grid), grid_cells(t_map, self.grid))
        ])
        mean_part, covariance_part = terms.mean((0, 1)) * cosine_decay(batch, self.decay_from)
        return {"mean": self.mean_weight * mean_part, "covariance": covariance_part}
