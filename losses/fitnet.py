"""Romero et al., "FitNets: Hints for Thin Deep Nets" (ICLR 2015)."""

import torch.nn.functional as F
from torch import Tensor

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, register_loss, stage_index
from losses.connectors import conv_regressor


@register_loss("fitnet")
class FitNet(DistillLoss):
    """MSE between a learned regression of the student's hint stage and the teacher's guided stage.

    ``stage`` picks the hint/guided stage (default -2, the second-to-last stage, which is the
    middle-block hint that RepDistiller uses for CIFAR ResNets). The regressor is RepDistiller's
    ``ConvReg`` (conv -> BN -> ReLU, the conv also matching the resolution; see
    ``conv_regressor``), built from the probed shapes; the weight 100 was tuned with it.

    Reference implementation: HobbitLong/RepDistiller, distiller_zoo/FitNet.py (HintLoss) and models/util.py (ConvReg).
    Deviations: none where ConvReg is defined; a student map smaller than the teacher's by other
    than half (ConvReg raises) gets an unpadded transposed conv (see ``conv_regressor``).
    """

    needs = frozenset({Need.FEATURES})
    description = "hint-layer MSE through a learned regressor (Romero et al. 2015)"

    def __init__(self, ctx: LossContext, *, stage: int):
        super().__init__(ctx)
        self.s_stage = stage_index(ctx.student, stage)
        self.t_stage = stage_index(ctx.teacher, stage)
        self.regressor = conv_regressor(ctx.student.features[self.s_stage], ctx.teacher.features[self.t_stage])

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> Tensor:
        hint = self.regressor(student.features[self.s_stage])
        return F.mse_loss(hint.float(), teacher.features[self.t_stage].float())
