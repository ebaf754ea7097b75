"""Heo, Lee, Yun & Choi, "Knowledge Transfer via Distillation of Activation Boundaries Formed by
Hidden Neurons" (AAAI 2019)."""

from torch import Tensor, nn

from losses.base import LossContext, register_loss
from losses.checks import count, positive
from losses.connectors import conv_regressor
from losses.numerics import fp32
from losses.pretraining import StudentInitialisation
from losses.stages import stage_pairs

AUTHORS_SCALE = 3 / 1000  # the authors' normalisation of the summed loss (bhheo/AB_distillation)


@fp32
def boundary_loss(source: Tensor, target: Tensor, margin: float) -> Tensor:
    """The paper's alternative loss (Eq. 5), summed over neurons: a squared hinge on the wrong side.

    A neuron the teacher leaves inactive (t <= 0) is pushed below -margin, an active one (t > 0)
    above +margin; ``source`` is the student stage through a connector, which can take either sign.
    """
    inactive = (target <= 0) & (source > -margin)
    active = (target > 0) & (source <= margin)
    return ((source + margin).pow(2) * inactive + (source - margin).pow(2) * active).sum()


def connector(student: tuple[int, int, int], teacher: tuple[int, int, int]) -> nn.Module:
    """None (identity) for equal channels and height, else conv -> BN (RepDistiller ``Connector``)."""
    if student[:2] == teacher[:2]:
        return nn.Identity()
    return conv_regressor(student, teacher, relu=False)


@register_loss("ab")
class AB(StudentInitialisation):
    """Activation-boundary transfer as the paper's initialisation stage, then cross-entropy only.

    ``prepare`` is the paper's stage: for ``init_epochs`` epochs (RepDistiller: 30) the student
    body and one connector per stage pair are trained with the boundary loss alone,
    stage terms weighted 1, 1/2, 1/4, ... from the last stage back, divided by the batch size and
    scaled by 3/1000 (authors' code; RepDistiller ``distiller_zoo/AB.py``, ``helper/pretrain.py``),
    with SGD at the recipe's learning rate. Afterwards the loss contributes nothing: the paper and
    RepDistiller train with cross-entropy alone (the CRD protocol's beta=1 multiplies a zero term).
    ``stages`` defaults to ``[-3, -2, -1]``, RepDistiller's ``feat[1:-1]``; ``margin`` is the
    paper's mu=1. As RepDistiller's ``Connector``, a stage pair of equal channels and height has no
    connector; otherwise it is ``conv_regressor`` without ReLU (conv -> BN, resolution matched).
    Each model's stages are read before their final ReLU, as RepDistiller's ``preact=True`` (its
    ``train_student.py`` sets it for ``abound``), where the model offers that (the CIFAR zoo's
    ``Need.PREACT_FEATURES``).

    Reference implementation: HobbitLong/RepDistiller, distiller_zoo/AB.py (ABLoss), models/util.py
    (Connector), helper/pretrain.py, train_student.py.
    Deviations: a model without pre-activation taps (timm's own models) is read after the activation:
    the teacher's sign pattern is the same either way, the student's source is not. Resolutions
    ConvReg refuses get ``conv_regressor``'s transposed conv.
    """

    reads_preact = True
    description = "activation-boundary initialisation stage, then CE (Heo et al. 2019)"

    def __init__(self, ctx: LossContext, *, stages: list[int], margin: float, init_epochs: int):
        super().__init__(ctx)
        self.pairs = stage_pairs(ctx, stages)
        self.margin = positive("ab: margin", margin)
        self.init_epochs = count("ab: init_epochs", init_epochs, 0)
        self.connectors = nn.ModuleList(
            connector(ctx.student.features[s], ctx.teacher.features[t]) for s, t in self.pairs
        )
        n = len(self.pairs)
        self.stage_weights = [2.0 ** (i - n + 1) for i in range(n)]

    def transfer_loss(self, student: tuple[Tensor, ...], teacher: tuple[Tensor, ...]) -> Tensor:
        total = sum(
            w * boundary_loss(connector(student[s]), teacher[t], self.margin)
            for w, connector, (s, t) in zip(self.stage_weights, self.connectors, self.pairs)
        )
        return total / student[0].shape[0] * AUTHORS_SCALE
