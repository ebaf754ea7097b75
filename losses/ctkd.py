"""Li, Li, Yang, Wang, Xu, Yang & Wang, "Curriculum Temperature for Knowledge Distillation" (AAAI 2023).

One mechanism, ``CurriculumTemperature``: a learnable global temperature whose gradient is reversed
and scaled by a curriculum, so it ascends the loss the student descends. It composes with the logit
losses that read a temperature, as the authors combine it: ``ctkd`` (KD), ``dkd-ctkd`` (DKD, the
authors' ``--distill dkd``) and ``ctkd-ls`` (KD on z-scored logits, Sun et al. 2024).
"""

import math

import torch
from torch import Tensor, nn

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, register_loss
from losses.checks import count, non_negative
from losses.dkd import decoupled_kl
from losses.kd import kd_divergence
from losses.standardization import zscore


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


class CurriculumTemperature(DistillLoss):
    """A logit loss at a learnable global temperature that the student's own step pushes to *raise* it.

    The temperature is ``t_start + t_end * sigmoid(w)`` with one parameter ``w`` (initialised to 1,
    so 15.6 at first) optimised with the student; its gradient passes a layer that multiplies it by
    the curriculum ``lambda``, cosine-shaped from 0 to ``-lambda_max`` over ``curriculum_epochs``
    epochs (the authors' ``--decay_max 0 --decay_min -1 --decay_loops 10`` with their 1-based
    epochs). The parameter sits in the student's optimizer, weight decay included, as the authors'
    ``trainable_list``. Subclasses compute their loss at ``self.temperature(batch.epoch)``.
    """

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


@register_loss("ctkd")
class CTKD(CurriculumTemperature):
    """KD at the curriculum temperature (``CurriculumTemperature``).

    Defaults are the CIFAR-100 script (``scripts/run_cifar_distill.sh``: CE 0.1, KD 0.9, t_start 1,
    t_end 20, a 10-epoch cosine curriculum to -1).

    Reference implementation: zhengli97/CTKD, models/temp_global.py, train_student.py, helper/loops.py
    Deviations: none
    """

    needs = frozenset({Need.LOGITS})
    description = "KD at an adversarially learned temperature with a curriculum (Li et al. 2023)"

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> Tensor:
        return kd_divergence(self.logits(student), self.logits(teacher), self.temperature(batch.epoch))

    def logits(self, outputs: Outputs) -> Tensor:
        return outputs.logits


@register_loss("ctkd-ls")
class CTKDLS(CTKD):
    """CTKD on z-scored logits (logit standardization, Sun et al. CVPR 2024): the learned temperature
    divides each row's standardised logits (``losses.standardization.zscore``).

    Defaults: KD weight 9, CE 0.1 and CTKD's temperature range and curriculum (the authors' CTKD copy,
    ``CTKD/scripts/run_cifar_distill.sh``, ``-r 0.1 -a 9``; their ``--kd_T 2`` is not read once the
    temperature is learned).

    Reference implementation: sunshangquan/logit-standardization-KD, CTKD/distiller_zoo/KD.py
    (``DistillKL_logit_stand``, whose ``normalize`` adds 1e-7 to the standard deviation at the repository's
    head, as here; an earlier commit did not), CTKD/helper/loops.py
    Deviations: none
    """

    description = "CTKD on z-scored logits (Sun et al. 2024)"

    def logits(self, outputs: Outputs) -> Tensor:
        return zscore(outputs.logits)


@register_loss("dkd-ctkd")
class DKDCTKD(CurriculumTemperature):
    """DKD's target (TCKD) and non-target (NCKD) terms at the curriculum temperature.

    The authors' ``--distill dkd`` run: their loop passes the learned temperature to ``DKDloss``
    and trains ``-r 1 -a 0 -b 1`` (CE 1, no KD term, DKD 1) with ``--dkd_alpha 1 --dkd_beta 2``.
    Their ``DKDloss`` has no warm-up, so neither has this loss.

    Reference implementation: zhengli97/CTKD, distiller_zoo/DKD.py, helper/loops.py, scripts/run_cifar_distill.sh
    Deviations: none
    """

    needs = frozenset({Need.LOGITS, Need.LABELS})
    description = "DKD at an adversarially learned temperature with a curriculum (Li et al. 2023)"

    def __init__(self, ctx: LossContext, *, alpha: float, beta: float, t_start: float, t_end: float,
                 lambda_max: float, curriculum_epochs: int):
        super().__init__(ctx, t_start=t_start, t_end=t_end, lambda_max=lambda_max,
                         curriculum_epochs=curriculum_epochs)
        self.alpha = non_negative("dkd-ctkd: alpha", alpha)
        self.beta = non_negative("dkd-ctkd: beta", beta)

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> dict[str, Tensor]:
        tckd, nckd = decoupled_kl(student.logits, teacher.logits, batch.labels, self.temperature(batch.epoch))
        return {"tckd": self.alpha * tckd, "nckd": self.beta * nckd}
