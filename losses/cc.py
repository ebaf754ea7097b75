"""Peng et al., "Correlation Congruence for Knowledge Distillation" (ICCV 2019)."""

import math

import torch.nn.functional as F
from torch import Tensor

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, register_loss
from losses.checks import count, positive
from losses.numerics import fp32


@fp32
def correlation_matrix(embedding: Tensor, gamma: float, order: int) -> Tensor:
    """Batch correlation under the Taylor-expanded Gaussian RBF kernel (paper §3.3, Eq. 9-10).

    For L2-normalised features exp(-gamma ||x - y||^2) = exp(-2 gamma) exp(2 gamma x.y), expanded
    to ``order``: sum_p exp(-2 gamma) (2 gamma)^p / p! (x.y)^p.
    """
    f = F.normalize(embedding, dim=1)
    cosine = f @ f.T
    return sum(math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * cosine.pow(p) for p in range(order + 1))


@register_loss("cc")
class CC(DistillLoss):
    """Make the student's batch correlation matrix congruent with the teacher's.

    L_CC = ||C_T - C_S||_2^2 / n^2 (paper Eq. 7) on the pooled penultimate embeddings, with the
    paper's kernel: ``gamma=0.4`` and expansion ``order=2``. The n x n matrix does not depend on
    the embedding widths, so no projection is needed across architectures. The harness adds CE;
    the paper's instance-level KD term is a separate loss (``kd``), and its class-uniform batch
    sampler is not used. RepDistiller's ``Correlation`` instead multiplies the absolute feature
    differences of neighbouring examples (an author-supplied proxy); the CRD protocol's weight
    0.02 was tuned for that proxy.
    """

    needs = frozenset({Need.EMBEDDING})
    description = "batch correlation congruence under a Taylor RBF kernel (Peng et al. 2019)"

    def __init__(self, ctx: LossContext, *, gamma: float, order: int):
        super().__init__(ctx)
        self.gamma = positive("cc: gamma", gamma)
        self.order = count("cc: order", order, 0)

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> Tensor:
        c_s = correlation_matrix(student.embedding, self.gamma, self.order)
        c_t = correlation_matrix(teacher.embedding, self.gamma, self.order)
        return (c_t - c_s).pow(2).mean()
