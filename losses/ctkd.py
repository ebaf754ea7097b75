"""Li, Li, Yang, Wang, Xu, Yang & Wang, "Curriculum Temperature for Knowledge Distillation" (AAAI 2023)."""

import math

import torch
from torch import Tensor, nn

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, register_loss
from losses.checks import count, non_negative
from losses.kd import kd_divergence


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; the backward multiplies the gradient by ``scale`` (negative: reversal)."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        return ctx.scale * grad, None


def cosine_curriculum(epoch: int, loops: int, start: float, end: float) -> float:
    """The authors' ``CosineDecay.get_value``: from ``start`` to ``end`` over ``loops`` 1-based epochs."""
    i = min(max(epoch, 0), loops)
    return (math.cos(i * math.pi / loops) + 1) / 2 * (start - end) + end


@register_loss("ctkd")
class CTKD(DistillLoss):
    """KD at a learnable global temperature that the student's own step pushes to *raise* the loss.

    The temperature is ``t_start + t_end * sigmoid(w)`` with one parameter ``w`` (initialised to 1,
    so 15.6 at first) optimised with the student; its gradient passes a layer that multiplies it by
    the curriculum ``lambda``, cosine-shaped from 0 to ``-lambda_max`` over ``curriculum_epochs``
    epochs (the authors' ``--decay_max 0 --decay_min -1 --decay_loops 10`` with their 1-based
    epochs), so the temperature ascends the KD loss the student descends. Defaults are the
    CIFAR-100 script (``scripts/run_cifar_distill.sh``: CE 0.1, KD 0.9, t_start 1, t_end 20); the
    parameter sits in the student's optimizer, weight decay included, as the authors' ``trainable_list``.

    Reference implementation: zhengli97/CTKD, models/temp_global.py, train_student.py, helper/loops.py
    Deviations: none
    """

    needs = frozenset({Need.LOGITS})
    description = "KD at an adversarially learned temperature with a curriculum (Li et al. 2023)"

    def __init__(self, ctx: LossContext, *, t_start: float, t_end: float, lambda_max: float,
                 curriculum_epochs: int):
        super().__init__(ctx)
        self.t_start = non_negative("ctkd: t_start", t_start)
        self.t_end = non_negative("ctkd: t_end", t_end)
        self.lambda_max = non_negative("ctkd: lambda_max", lambda_max)
        self.curriculum_epochs = count("ctkd: curriculum_epochs", curriculum_epochs, 1)
        self.global_t = nn.Parameter(torch.ones(()))

    def reversal(self, epoch: int) -> float:
        """The gradient scale of a 0-based epoch: 0 at first, ``-lambda_max`` after the curriculum."""
        return cosine_curriculum(epoch + 1, self.curriculum_epochs, 0.0, -self.lambda_max)

    def temperature(self, epoch: int) -> Tensor:
        reversed_t = _ScaleGradient.apply(self.global_t, self.reversal(epoch))
        return self.t_start + self.t_end * torch.sigmoid(reversed_t)

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> Tensor:
        return kd_divergence(student.logits, teacher.logits, self.temperature(batch.epoch))
