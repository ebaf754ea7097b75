"""Lv, Yang & Li, "Wasserstein Distance Rivals Kullback-Leibler Divergence for Knowledge
Distillation" (NeurIPS 2024): WKD-L on logits, WKD-F on features.

KL compares two class distributions bin by bin; a Wasserstein distance can move mass between
*related* classes at a low cost, and between feature distributions whose supports do not overlap.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, Preparation, register_loss, stage_index
from losses.connectors import conv_connector
from losses.checks import count, non_negative, positive
from losses.ot.class_cost import CLASS_COSTS, COST_FEATURES, cached_class_similarity
from losses.ot.functional import COVARIANCES, gaussian_w2_terms, sinkhorn_histograms
from losses.ot.options import choice


@register_loss("wkd-l")
class WKDLogit(DistillLoss):
    """WKD-L: entropic OT between the student's and teacher's non-target class probabilities.

    As in the paper, the target class is split off: ``target`` is the teacher-weighted
    cross-entropy on the true class, ``-p_t[y] log p_s[y]`` (temperature 1), and ``wasserstein``
    is ``wasserstein_weight`` times the Sinkhorn transport cost between the two distributions over
    the other classes (temperature ``T``; the true class gets zero mass, which is the paper's
    removal of its row and column without building a per-example cost matrix). The ground cost
    is ``1 - exp(-sharpen * (1 - similarity))`` (``sharpen=0``: ``1 - similarity``), with the
    class similarity computed from the teacher in ``prepare`` (see ``losses.ot.class_cost``).
    ``wasserstein_weight`` is the paper's weight of the WD term relative to the target term.

    Footprint per step: the ``[C, C]`` kernel and kernel-times-cost, plus ``2 * iters`` ``[B, C]``
    scalings kept for autograd; no ``[B, C, C]`` tensor (C=1000, B=256, 10 iterations: ~28 MB).
    Not applied: the authors' cosine decay of the weight in the last epochs.
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
        self.T, self.eps, self.iters = T, eps, iters
        self.class_cost, self.cost_features, self.samples_per_class = class_cost, cost_features, samples_per_class
        self.sharpen, self.wasserstein_weight = sharpen, wasserstein_weight
        # Filled by prepare(); a buffer, so a checkpoint carries it (resumed training skips prepare).
        self.register_buffer("cost", torch.zeros(ctx.teacher.num_classes, ctx.teacher.num_classes))

    def prepare(self, prep: Preparation) -> None:
        num_classes = self.ctx.teacher.num_classes
        similarity = cached_class_similarity(prep, self.class_cost, self.cost_features, num_classes, self.samples_per_class)
        distance = (1 - similarity).clamp_min(0).fill_diagonal_(0)
        self.cost.copy_(1 - torch.exp(-self.sharpen * distance) if self.sharpen else distance)

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> dict[str, Tensor]:
        s_logits, t_logits = student.logits.float(), teacher.logits.float()
        labels = batch.labels[:, None]
        target = -(F.softmax(t_logits, 1).gather(1, labels) * F.log_softmax(s_logits, 1).gather(1, labels)).mean()
        is_target = F.one_hot(batch.labels, s_logits.shape[1]).bool()
        p_s = F.softmax(s_logits.masked_fill(is_target, float("-inf")) / self.T, 1)
        p_t = F.softmax(t_logits.masked_fill(is_target, float("-inf")) / self.T, 1)
        wasserstein = sinkhorn_histograms(p_s, p_t, self.cost, eps=self.eps, iters=self.iters).mean()
        return {"target": target, "wasserstein": self.wasserstein_weight * wasserstein}


@register_loss("wkd-f")
class WKDFeature(DistillLoss):
    """WKD-F: Gaussian 2-Wasserstein distance between per-example feature distributions.

    Each example's map at ``stage`` (after a 1x1 conv + BN connector to the teacher's channels,
    as the authors' projector) is summarised by the mean and covariance of its H·W channel
    vectors; the loss is ``mean_weight * |mu_s - mu_t|^2 + covariance part`` of the closed-form
    W2^2 (see ``losses.ot.functional.gaussian_w2``), summed over channels and averaged over the
    batch. ``covariance="diag"`` is the paper's default (the covariance part is then
    ``|sigma_s - sigma_t|^2``); ``"full"`` uses the Bures term. Statistics are taken over each
    map's own positions, so maps of different resolution need no pooling.
    """

    needs = frozenset({Need.FEATURES})
    description = "Gaussian W2 between per-example feature mean/covariance (Lv et al. 2024)"

    def __init__(self, ctx: LossContext, *, stage: int, mean_weight: float, covariance: str, reg: float):
        super().__init__(ctx)
        non_negative("mean_weight", mean_weight)
        choice("covariance", covariance, COVARIANCES)
        non_negative("reg", reg)
        self.s_stage = stage_index(ctx.student, stage)
        self.t_stage = stage_index(ctx.teacher, stage)
        self.connector = conv_connector(ctx.student.features[self.s_stage][0], ctx.teacher.features[self.t_stage][0])
        self.mean_weight, self.covariance, self.reg = mean_weight, covariance, reg

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> dict[str, Tensor]:
        s_points = self.connector(student.features[self.s_stage]).flatten(2).mT
        t_points = teacher.features[self.t_stage].flatten(2).mT
        mean_part, covariance_part = gaussian_w2_terms(s_points, t_points, covariance=self.covariance, reg=self.reg).mean(0)
        return {"mean": self.mean_weight * mean_part, "covariance": covariance_part}
