"""Park, Kim, Lu & Cho, "Relational Knowledge Distillation" (CVPR 2019)."""

import torch
import torch.nn.functional as F
from torch import Tensor

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, register_loss
from losses.checks import non_negative
from losses.numerics import fp32

MIN_SQUARED_DISTANCE = 1e-12  # clamp before sqrt, as the authors' pdist: no infinite gradient at 0


@fp32
def distance_relation(embedding: Tensor) -> Tensor:
    """Pairwise Euclidean distances divided by their mean over distinct pairs (paper Eq. 5-6)."""
    n = embedding.shape[0]
    diff = embedding.unsqueeze(0) - embedding.unsqueeze(1)
    off_diagonal = 1 - torch.eye(n, device=embedding.device)
    distance = diff.pow(2).sum(dim=2).clamp_min(MIN_SQUARED_DISTANCE).sqrt() * off_diagonal
    mean = distance.sum() / max(n * (n - 1), 1)  # >= 1e-6 by the clamp, so never 0/0
    return distance / mean


@fp32
def angle_relation(embedding: Tensor) -> Tensor:
    """cos of the angle at each vertex i between edges to j and k (paper Eq. 8), [n, n, n]."""
    edges = F.normalize(embedding.unsqueeze(0) - embedding.unsqueeze(1), dim=2)  # edges[i, j] ~ e_j - e_i
    return edges @ edges.transpose(1, 2)


@register_loss("rkd")
class RKD(DistillLoss):
    """Distance-wise and angle-wise relational potentials, each under the Huber loss.

    Returns both terms, weighted by the paper's λ_D=25 and λ_A=50 (``distance_weight``,
    ``angle_weight``, as RepDistiller ``distiller_zoo/RKD.py``), on the pooled penultimate
    embeddings (RepDistiller's ``feat[-1]``). Relations are batch-by-batch, so embedding widths may
    differ. Coincident points (constant inputs) give distance 1e-6 and zero edges, never 0/0.

    Reference implementation: HobbitLong/RepDistiller, distiller_zoo/RKD.py (RKDLoss).
    Deviations: none.
    """

    needs = frozenset({Need.EMBEDDING})
    batchwise = True
    description = "relational distance + angle potentials (Park et al. 2019)"

    def __init__(self, ctx: LossContext, *, distance_weight: float, angle_weight: float):
        super().__init__(ctx)
        self.distance_weight = non_negative("rkd: distance_weight", distance_weight)
        self.angle_weight = non_negative("rkd: angle_weight", angle_weight)

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> dict[str, Tensor]:
        s, t = student.embedding, teacher.embedding
        distance = F.smooth_l1_loss(distance_relation(s), distance_relation(t))
        angle = F.smooth_l1_loss(angle_relation(s), angle_relation(t))
        return {"distance": self.distance_weight * distance, "angle": self.angle_weight * angle}
