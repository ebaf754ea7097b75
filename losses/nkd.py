"""Yang, Zeng, Yuan & Li, "From Knowledge Distillation to Self-Knowledge Distillation: A Unified
Approach with Normalized Loss and Customized Soft Labels" (ICCV 2023) — normalized KD."""

import torch.nn.functional as F
from torch import Tensor

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, register_loss
from losses.checks import non_negative, positive
from losses.dkd import MASKED
from losses.numerics import fp32


@fp32
def normalized_kd(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, T: float,
                  gamma: float) -> tuple[Tensor, Tensor]:
    """(target term, non-target term) of NKD, each averaged over the batch.

    The target term ``-t_y log s_y`` uses both models' probabilities at temperature 1. The
    non-target term is ``-gamma T^2 sum_k t'_k log s'_k`` over the non-target classes with the
    target logit removed and the rest re-softmaxed at ``T`` (the paper's normalised
    non-target distributions). Both are cross-entropies, as in the authors' code, so the value carries the
    teacher's entropy; the gradient is that of the KL form.
    """
    log_s = F.log_softmax(student_logits, dim=1).gather(1, labels[:, None])
    p_t = F.softmax(teacher_logits, dim=1).gather(1, labels[:, None])
    target = -(p_t * log_s).mean()

    target_class = F.one_hot(labels, student_logits.shape[1]).bool()  # masked, not indexed: no host sync
    log_s_rest = F.log_softmax((student_logits / T).masked_fill(target_class, MASKED), dim=1)
    p_t_rest = F.softmax((teacher_logits / T).masked_fill(target_class, MASKED), dim=1)
    non_target = -gamma * T * T * (p_t_rest * log_s_rest).sum(dim=1).mean()
    return target, non_target


@register_loss("nkd")
class NKD(DistillLoss):
    """Normalized KD: the teacher's target probability as a soft target-class label, plus the
    non-target classes' normalised distributions matched at temperature ``T`` and weighted ``gamma``.

    Defaults are the authors' CIFAR-100 configuration (``T=3, gamma=3.5``); their ImageNet one
    (``T=1, gamma=1.5``) is in ``bench/recipes/datasets/imagenet.toml``. Loss and CE weights are 1.

    Reference implementation: yzd-v/cls_KD, mmcls/models/dis_losses/nkd.py
    Deviations: none
    """

    needs = frozenset({Need.LOGITS, Need.LABELS})
    description = "normalized KD: target and normalised non-target terms (Yang et al. 2023)"

    def __init__(self, ctx: LossContext, *, T: float, gamma: float):
        super().__init__(ctx)
        self.T = positive("nkd: T", T)
        self.gamma = non_negative("nkd: gamma", gamma)

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> dict[str, Tensor]:
        target, non_target = normalized_kd(student.logits, teacher.logits, batch.labels, self.T, self.gamma)
        return {"target": target, "non_target": non_target}
