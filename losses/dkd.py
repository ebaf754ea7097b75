"""Zhao, Cui, Song, Qiu & Liang, "Decoupled Knowledge Distillation" (CVPR 2022)."""

import torch
import torch.nn.functional as F
from torch import Tensor

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, register_loss
from losses.checks import non_negative, positive
from losses.numerics import fp32
from losses.warmup import warmup_factor, warmup_fraction

MASKED = -1e9  # a logit whose probability underflows to exactly 0 in fp32, yet keeps log-space finite


@fp32
def decoupled_kl(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, T: float) -> tuple[Tensor, Tensor]:
    """(TCKD, NCKD), each T^2 * KL(teacher || student), averaged over the batch (paper Eq. 2-4).

    TCKD compares the binary distributions [p_target, 1 - p_target]; NCKD the distributions over
    the non-target classes, renormalised. 1 - p_target is taken as a log-sum-exp of the non-target
    log-probabilities, so a confident teacher (p_target -> 1) does not cancel to log 0.
    """
    target = F.one_hot(labels, student_logits.shape[1]).bool()

    def binary(logits: Tensor) -> Tensor:
        log_p = F.log_softmax(logits / T, dim=1)
        log_target = log_p.gather(1, labels[:, None])
        log_rest = log_p.masked_fill(target, float("-inf")).logsumexp(dim=1, keepdim=True)
        return torch.cat([log_target, log_rest], dim=1)

    def non_target(logits: Tensor) -> Tensor:
        return F.log_softmax((logits / T).masked_fill(target, MASKED), dim=1)

    def kl(log_q_student: Tensor, log_p_teacher: Tensor) -> Tensor:
        return F.kl_div(log_q_student, log_p_teacher, reduction="batchmean", log_target=True) * T * T

    tckd = kl(binary(student_logits), binary(teacher_logits))
    nckd = kl(non_target(student_logits), non_target(teacher_logits))
    return tckd, nckd


@register_loss("dkd")
class DKD(DistillLoss):
    """Target-class (TCKD) and non-target-class (NCKD) KD, weighted by alpha and beta, with warm-up.

    Both terms ramp in as mdistiller's ``min(epoch / warmup, 1)`` with its epochs counted from 1
    (``engine/trainer.py``), so the first epoch already has weight 1/warmup; ``warmup`` is a fraction
    of the run (``losses.warmup``). Defaults are the mdistiller CIFAR-100 configuration
    (``engine/cfg.py``: alpha=1, beta=8, T=4, CE weight 1, a warm-up of 20 of 240 epochs); the
    harness adds CE, so only TCKD and NCKD are returned.

    Reference implementation: megvii-research/mdistiller, mdistiller/distillers/DKD.py.
    Deviations: none.
    """

    needs = frozenset({Need.LOGITS, Need.LABELS})
    description = "decoupled target / non-target class KD with warm-up (Zhao et al. 2022)"

    def __init__(self, ctx: LossContext, *, alpha: float, beta: float, T: float, warmup: float):
        super().__init__(ctx)
        self.alpha = non_negative("dkd: alpha", alpha)
        self.beta = non_negative("dkd: beta", beta)
        self.T = positive("dkd: T", T)
        self.warmup = warmup_fraction("dkd", warmup)

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> dict[str, Tensor]:
        tckd, nckd = decoupled_kl(student.logits, teacher.logits, batch.labels, self.T)
        ramp = warmup_factor(batch, self.warmup, first=1)
        return {"tckd": ramp * self.alpha * tckd, "nckd": ramp * self.beta * nckd}
