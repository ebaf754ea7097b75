"""Passalis & Tefas, "Learning Deep Representations with Probabilistic Knowledge Transfer" (ECCV 2018)."""

from torch import Tensor

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, register_loss
from losses.numerics import fp32

EPS = 1e-7  # the authors' guard against 0/0 and log 0 (passalis/probabilistic_kt)


@fp32
def conditional_probabilities(embedding: Tensor) -> Tensor:
    """p_{i|j} from the cosine kernel K = (cos + 1) / 2, normalised per row (paper Eq. 8-9)."""
    unit = embedding / (embedding.norm(dim=1, keepdim=True) + EPS)
    kernel = (unit @ unit.T + 1) / 2
    return kernel / kernel.sum(dim=1, keepdim=True)


@register_loss("pkt")
class PKT(DistillLoss):
    """KL divergence between the teacher's and the student's conditional probability distributions.

    Mean over the batch-by-batch matrix of p_t log(p_t / p_s), eps-guarded as in the authors' code
    (RepDistiller ``distiller_zoo/PKT.py``), on the pooled penultimate embeddings (RepDistiller's
    ``feat[-1]``). The kernel only needs per-model cosines, so embedding widths may differ.

    Reference implementation: HobbitLong/RepDistiller, distiller_zoo/PKT.py (PKT).
    Deviations: none.
    """

    needs = frozenset({Need.EMBEDDING})
    batchwise = True
    description = "probabilistic knowledge transfer with a cosine kernel (Passalis & Tefas 2018)"

    def __init__(self, ctx: LossContext):
        super().__init__(ctx)

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> Tensor:
        p_s = conditional_probabilities(student.embedding)
        p_t = conditional_probabilities(teacher.embedding)
        return (p_t * ((p_t + EPS) / (p_s + EPS)).log()).mean()
