"""Yang, Martinez, Bulat & Tzimiropoulos, "Knowledge Distillation via Softmax Regression
Representation Learning" (ICLR 2021)."""

import torch.nn.functional as F
from torch import Tensor, nn

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, Preparation, register_loss
from losses.checks import non_negative, positive
from losses.kd import kd_divergence
from losses.teacher_head import copy_teacher_classifier, hold_teacher_classifier, teacher_classifier


@register_loss("srrl")
class SRRL(DistillLoss):
    """The student's pooled features, mapped to the teacher's width, matched to the teacher's pooled
    features (feature term) and passed through the teacher's frozen classifier to match the
    teacher's logits (softmax-regression term); both are MSEs over every element.

    The connector is 1x1 conv (no bias) -> BN -> ReLU on the pooled vector as a 1x1 map. The
    teacher's classifier is copied in ``prepare`` into buffers this loss owns (in its state dict
    and checkpoints, outside the optimizer), which needs a teacher whose classifier is one linear
    layer on its pooled features. Defaults follow the SimKD repository's SRRL command for CIFAR-100
    (``-c 1 -d 1 -b 1``: CE 1, KD at T=4 weight 1, SRRL weight 1); KD is part of this loss so
    the harness's one loss weight is the ``-b`` weight.

    Reference implementation: DefangChen/SimKD, models/util.py (``SRRL``), helper/loops.py, scripts/run_distill.sh
    Deviations: none; the SRRL authors' repository (jingyang2017/SRRL) was not available to compare with.
    """

    needs = frozenset({Need.LOGITS, Need.EMBEDDING})
    description = "student features through the teacher's frozen classifier (Yang et al. 2021)"

    def __init__(self, ctx: LossContext, *, kd_weight: float, T: float):
        super().__init__(ctx)
        self.kd_weight = non_negative("srrl: kd_weight", kd_weight)
        self.T = positive("srrl: T", T)
        s_dim, t_dim = ctx.student.embedding, ctx.teacher.embedding
        self.connector = nn.Sequential(nn.Conv2d(s_dim, t_dim, 1, bias=False), nn.BatchNorm2d(t_dim), nn.ReLU())
        hold_teacher_classifier(self, ctx.teacher.num_classes, t_dim)

    def prepare(self, prep: Preparation) -> None:
        copy_teacher_classifier(self, "srrl", prep.teacher)

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> dict[str, Tensor]:
        mapped = self.connector(student.embedding[:, :, None, None]).flatten(1)
        regressed = teacher_classifier(self, mapped)
        return {
            "feature": F.mse_loss(mapped.float(), teacher.embedding.float()),
            "regression": F.mse_loss(regressed.float(), teacher.logits.float()),
            "kd": self.kd_weight * kd_divergence(student.logits, teacher.logits, self.T),
        }
