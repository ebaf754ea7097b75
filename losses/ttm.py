"""Zheng & Yang, "Knowledge Distillation Based on Transformed Teacher Matching" (ICLR 2024)."""

import torch.nn.functional as F
from torch import Tensor

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, register_loss
from losses.checks import positive
from losses.numerics import fp32


@fp32
def transformed_teacher_kl(student_logits: Tensor, teacher_logits: Tensor, exponent: float) -> tuple[Tensor, Tensor]:
    """Per-example KL(p_t^gamma / Z || softmax(s)) and the normaliser Z = sum_k p_t,k^gamma.

    The power transform is taken in log space (``gamma * log_softmax``), so a tiny teacher
    probability raised to a small power does not pass through 0.
    """
    log_power = exponent * F.log_softmax(teacher_logits, dim=1)
    log_norm = log_power.logsumexp(dim=1)
    log_target = log_power - log_norm[:, None]
    kl = F.kl_div(F.log_softmax(student_logits, dim=1), log_target, reduction="none", log_target=True).sum(dim=1)
    return kl, log_norm.exp()


class _TransformedTeacher(DistillLoss):
    needs = frozenset({Need.LOGITS})

    def __init__(self, ctx: LossContext, *, exponent: float):
        super().__init__(ctx)
        self.exponent = positive(f"{type(self).__name__.lower()}: exponent", exponent)


@register_loss("ttm")
class TTM(_TransformedTeacher):
    """KL from the power-transformed teacher ``p_t^gamma / Z`` to the student at temperature 1.

    Equivalent to a temperature ``1 / gamma`` on the teacher only. ``exponent`` is the authors'
    ``--ttm_l``; defaults (0.1, weight 45, CE 1) are their README's CIFAR-100 vgg13 -> vgg8 command.

    At weight 45 the term's gradient on a random student's logits is 9x CE's at C = 10, B = 128, against
    2.6x at C = 100, B = 64: with 10 classes the near-uniform target (the teacher at temperature 10)
    outweighs the labels 3.5x more than on CIFAR-100, at the full learning rate from the first step. One
    of three converged Fashion-MNIST seeds ends predicting one class (results/fashion-mnist/README.md).

    Reference implementation: zkxufo/TTM, distiller_zoo/ttm.py
    Deviations: none
    """

    description = "transformed teacher matching: teacher-only power transform (Zheng & Yang 2024)"

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> Tensor:
        kl, _ = transformed_teacher_kl(student.logits, teacher.logits, self.exponent)
        return kl.mean()


@register_loss("wttm")
class WTTM(_TransformedTeacher):
    """TTM with each example weighted by its normaliser ``Z = sum_k p_t,k^gamma``.

    Z is large where the teacher is uncertain, so those examples count more (the paper's
    sample-adaptive weight); the authors' code does not detach it, but it depends on the frozen
    teacher only.

    Reference implementation: zkxufo/TTM, distiller_zoo/wttm.py
    Deviations: none
    """

    description = "weighted TTM: per-example weight from the transformed teacher (Zheng & Yang 2024)"

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> Tensor:
        kl, norm = transformed_teacher_kl(student.logits, teacher.logits, self.exponent)
        return (norm * kl).mean()
