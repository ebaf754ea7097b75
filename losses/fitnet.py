"""Romero et al., "FitNets: Hints for Thin Deep Nets" (ICLR 2015)."""

import torch.nn.functional as F
from torch import Tensor

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, register_loss, stage_index
from losses.connectors import align_spatial, conv_connector


@register_loss("fitnet")
class FitNet(DistillLoss):
    """MSE between a learned regression of the student's hint stage and the teacher's guided stage.

    ``stage`` picks the hint/guided stage (default -2, the second-to-last stage, which is the
    middle-block hint that RepDistiller uses for CIFAR ResNets). The regressor is a 1x1 conv + BN
    built from the probed channel counts; maps of different resolution are pooled to the smaller.
    """

    needs = frozenset({Need.FEATURES})
    description = "hint-layer MSE through a learned regressor (Romero et al. 2015)"

    def __init__(self, ctx: LossContext, *, stage: int):
        super().__init__(ctx)
        self.s_stage = stage_index(ctx.student, stage)
        self.t_stage = stage_index(ctx.teacher, stage)
        s_channels = ctx.student.features[self.s_stage][0]
        t_channels = ctx.teacher.features[self.t_stage][0]
        self.regressor = conv_connector(s_channels, t_channels)

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> Tensor:
        hint = self.regressor(student.features[self.s_stage])
        hint, guided = align_spatial(hint, teacher.features[self.t_stage])
        return F.mse_loss(hint.float(), guided.float())
