"""Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (2015)."""

import torch.nn.functional as F
from torch import Tensor

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, register_loss


def kd_divergence(student_logits: Tensor, teacher_logits: Tensor, T: float) -> Tensor:
    """T^2 * KL(softmax(t/T) || softmax(s/T)), averaged over the batch.

    The T^2 factor keeps gradient magnitudes comparable across temperatures (Hinton et al. §2).
    """
    log_p_s = F.log_softmax(student_logits.float() / T, dim=1)
    log_p_t = F.log_softmax(teacher_logits.float() / T, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * T * T


@register_loss("kd", aliases=("kl",))
class KD(DistillLoss):
    """Soft-target KL divergence at temperature ``T``.

    Defaults (T=4, weight 0.9, CE weight 0.1) follow the CRD protocol (RepDistiller
    ``train_student.py``); see ``bench/recipes/losses/classic.toml``.

    Reference implementation: HobbitLong/RepDistiller, distiller_zoo/KD.py (DistillKL).
    Deviations: none.
    """

    needs = frozenset({Need.LOGITS})
    description = "soft-target KL divergence at temperature T (Hinton et al. 2015)"

    def __init__(self, ctx: LossContext, *, T: float):
        super().__init__(ctx)
        self.T = T

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> Tensor:
        return kd_divergence(student.logits, teacher.logits, self.T)
