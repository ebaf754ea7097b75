"""Yim, Joo, Bae & Kim, "A Gift from Knowledge Distillation: Fast Optimization, Network
Minimization and Transfer Learning" (CVPR 2017)."""

from torch import Tensor, nn

from losses.base import LossContext, register_loss
from losses.checks import count
from losses.connectors import align_spatial, conv_connector
from losses.numerics import fp32
from losses.pretraining import StudentInitialisation
from losses.stages import ascending_pairs
from registry import ConfigError


@fp32
def fsp_matrix(lower: Tensor, upper: Tensor) -> Tensor:
    """G[i, j] = mean over positions of lower_i * upper_j, [B, C_lower, C_upper] (paper Eq. 1).

    Maps of different resolution are pooled to the smaller one, as in RepDistiller.
    """
    lower, upper = align_spatial(lower, upper)
    return lower.flatten(2) @ upper.flatten(2).transpose(1, 2) / lower[0, 0].numel()


@register_loss("fsp")
class FSP(StudentInitialisation):
    """Flow-of-solution-procedure matching as the paper's initialisation stage, then cross-entropy only.

    ``prepare`` is the paper's stage 1: for ``init_epochs`` epochs (RepDistiller: 30) the student
    body is trained to match the teacher's FSP matrices between consecutive ``stages``, the mean
    squared differences summed with equal weights (RepDistiller ``distiller_zoo/FSP.py``,
    ``helper/pretrain.py``; SGD at the recipe's learning rate). Stage 2 trains with cross-entropy
    alone, so the loss contributes nothing afterwards (the CRD protocol's beta=50 multiplies a
    zero term). ``stages`` defaults to ``[-4, -3, -2, -1]``: for a CIFAR ResNet the stem and three
    groups, RepDistiller's ``feat[:-1]``. Where a student stage has other channels than the
    teacher's (RepDistiller refuses such pairs), a 1x1 conv + BN connector, trained in the same
    stage, maps it to the teacher's width.

    Reference implementation: HobbitLong/RepDistiller, distiller_zoo/FSP.py (FSP), helper/pretrain.py.
    Deviations: the 1x1 conv + BN connector for unequal channel counts (RepDistiller raises an
    error there), so cross-architecture pairs run; equal channels get none, as in RepDistiller.
    """

    description = "FSP-matrix initialisation stage, then CE (Yim et al. 2017)"

    def __init__(self, ctx: LossContext, *, stages: list[int], init_epochs: int):
        super().__init__(ctx)
        self.pairs = ascending_pairs(ctx, stages)
        if len(self.pairs) < 2:
            raise ConfigError(f"fsp relates consecutive stages, so stages needs at least two entries, got {stages}")
        self.init_epochs = count("fsp: init_epochs", init_epochs, 0)
        channels = [(ctx.student.features[s][0], ctx.teacher.features[t][0]) for s, t in self.pairs]
        self.connectors = nn.ModuleList(
            nn.Identity() if c_s == c_t else conv_connector(c_s, c_t) for c_s, c_t in channels
        )

    def transfer_loss(self, student: tuple[Tensor, ...], teacher: tuple[Tensor, ...]) -> Tensor:
        s = [connector(student[i]) for connector, (i, _) in zip(self.connectors, self.pairs)]
        t = [teacher[j] for _, j in self.pairs]
        return sum(
            (fsp_matrix(s[k], s[k + 1]) - fsp_matrix(t[k], t[k + 1])).pow(2).mean() for k in range(len(s) - 1)
        )
