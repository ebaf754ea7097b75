"""Peng et al., "Correlation Congruence for Knowledge Distillation" (ICCV 2019)."""

import math

import torch.nn.functional as F
from torch import Tensor, nn

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, register_loss
from losses.checks import choice, count, positive
from losses.numerics import fp32

VARIANTS = ("repdistiller", "paper")


@fp32
def correlation_matrix(embedding: Tensor, gamma: float, order: int) -> Tensor:
    """Batch correlation under the Taylor-expanded Gaussian RBF kernel (paper §3.3, Eq. 9-10).

    For L2-normalised features exp(-gamma ||x - y||^2) = exp(-2 gamma) exp(2 gamma x.y), expanded
    to ``order``: sum_p exp(-2 gamma) (2 gamma)^p / p! (x.y)^p.
    """
    f = F.normalize(embedding, dim=1)
    cosine = f @ f.T
    return sum(math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * cosine.pow(p) for p in range(order + 1))


@fp32
def neighbour_correlation(student: Tensor, teacher: Tensor) -> Tensor:
    """RepDistiller's ``Correlation``: with d = |e_S - e_T|, the batch mean of sum_k d[i, k] d[i + 1, k]."""
    delta = (student - teacher).abs()
    return (delta[:-1] * delta[1:]).sum(dim=1).mean()


@register_loss("cc")
class CC(DistillLoss):
    """Make the student's batch correlations congruent with the teacher's.

    ``variant`` "repdistiller" (default) is the code that produced the CRD table: both pooled
    penultimate embeddings go through a linear head to ``embed_dim`` (128, RepDistiller
    ``LinearEmbed``, trained with the student) and the loss multiplies the absolute differences
    of neighbouring examples (the proxy the CC authors gave RepDistiller); the CRD protocol's
    weight 0.02 was tuned for it. ``variant`` "paper" is L_CC = ||C_T - C_S||_2^2 / n^2 (paper
    Eq. 7) under the paper's Taylor RBF kernel, ``gamma=0.4`` and expansion ``order=2``, on the
    embeddings themselves (the n x n matrix does not depend on their widths, so no head). The
    harness adds CE; the paper's instance-level KD term is a separate loss (``kd``), and its
    class-uniform batch sampler is not used.

    Reference implementation: HobbitLong/RepDistiller, distiller_zoo/CC.py (Correlation),
    train_student.py (LinearEmbed heads).
    Deviations: none by default; ``variant="paper"`` follows the paper's kernel instead.
    """

    needs = frozenset({Need.EMBEDDING})
    batchwise = True
    description = "batch correlation congruence (Peng et al. 2019)"

    def __init__(self, ctx: LossContext, *, variant: str, embed_dim: int, gamma: float, order: int):
        super().__init__(ctx)
        self.variant = choice("cc: variant", variant, VARIANTS)
        self.gamma = positive("cc: gamma", gamma)
        self.order = count("cc: order", order, 0)
        embed_dim = count("cc: embed_dim", embed_dim, 1)
        if self.variant == "repdistiller":
            self.embed_s = nn.Linear(ctx.student.embedding, embed_dim)
            self.embed_t = nn.Linear(ctx.teacher.embedding, embed_dim)

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> Tensor:
        if self.variant == "repdistiller":
            return neighbour_correlation(self.embed_s(student.embedding), self.embed_t(teacher.embedding))
        c_s = correlation_matrix(student.embedding, self.gamma, self.order)
        c_t = correlation_matrix(teacher.embedding, self.gamma, self.order)
        return (c_t - c_s).pow(2).mean()
