"""OT between intermediate feature maps: the OT family of ``embedding.py`` one stage earlier.

Each spatial position's channel vector is a point. ``points="example"`` matches every example's
H·W points with the same example's teacher points (B small problems, solved as one batch: it asks
"is the spatial distribution of features the same?"). ``points="batch"`` pools the positions of the
whole batch into one cloud of B·H·W points per model (across-instance matching, as the
embedding-level loss, at the price of a (B·H·W)² cost matrix: EMD gets slow beyond a few thousand
points).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch.nn.functional as F
from torch import Tensor, nn

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, register_loss, stage_index
from losses.connectors import align_spatial, conv_connector
from losses.ot.options import choice
from losses.ot.solvers import ot_solver
from registry import ConfigError

POINTS = ("example", "batch")


def feature_points(feature: Tensor, points: str) -> Tensor:
    """NCHW map -> per-example clouds ``[B, H*W, C]`` or one cloud ``[B*H*W, C]``."""
    clouds = feature.flatten(2).mT
    return clouds if points == "example" else clouds.reshape(-1, clouds.shape[-1])


@register_loss("ot-feature")
class FeatureOT(DistillLoss):
    """OT distance between one stage's student and teacher feature points.

    ``stage`` picks the stage (negative counts from the end). A 1x1 conv + BN connector maps the
    student's channels to the teacher's when they differ; maps of different resolution are pooled
    to the smaller. ``solver`` names an OT solver of ``losses.ot.solvers`` and ``solver_options``
    gives every one of its settings.

    Reference implementation: none; this is the OT of ``ot-ipot`` moved to an intermediate stage,
    not a published loss.
    Deviations: not applicable (no paper defines it); the weight is ``ot-ipot``'s, not calibrated
    for it.
    """

    needs = frozenset({Need.FEATURES})
    description = "OT between an intermediate stage's spatial feature points (any OT solver)"

    def __init__(self, ctx: LossContext, *, stage: int, points: str, normalize: bool, solver: str, solver_options: Mapping):
        super().__init__(ctx)
        choice("points", points, POINTS)
        if not isinstance(solver_options, Mapping):
            raise ConfigError(f"solver_options must be a table of the solver's settings, got {solver_options!r}")
        self.s_stage = stage_index(ctx.student, stage)
        self.t_stage = stage_index(ctx.teacher, stage)
        s_channels = ctx.student.features[self.s_stage][0]
        t_channels = ctx.teacher.features[self.t_stage][0]
        self.connector = conv_connector(s_channels, t_channels) if s_channels != t_channels else nn.Identity()
        self.points = points
        self.normalize = normalize
        self.solver = ot_solver(solver, **solver_options)

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> Tensor:
        s_map = self.connector(student.features[self.s_stage])
        s_map, t_map = align_spatial(s_map, teacher.features[self.t_stage])
        x, y = feature_points(s_map.float(), self.points), feature_points(t_map.float(), self.points)
        if self.normalize:
            x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
        return self.solver(x, y, batch.generator).mean()
