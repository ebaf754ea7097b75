"""Kim, Park & Kwak, "Paraphrasing Complex Network: Network Compression via Factor Transfer" (NeurIPS 2018)."""

import torch.nn.functional as F
from torch import Tensor, nn

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, Preparation, register_loss, stage_index
from losses.checks import choice, count, positive
from losses.connectors import align_spatial
from losses.numerics import fp32
from losses.pretraining import teacher_features, train_stage
from registry import ConfigError


def conv_stack(widths: list[int], *, transposed: bool = False, batch_norm: bool = False) -> nn.Sequential:
    """3x3 stride-1 (transposed) convs, each then BN if ``batch_norm``, then LeakyReLU(0.1).

    As RepDistiller's ``Paraphraser`` (no BN) and ``Translator`` (BN), ``models/util.py``.
    """
    conv = nn.ConvTranspose2d if transposed else nn.Conv2d
    layers: list[nn.Module] = []
    for c_in, c_out in zip(widths, widths[1:]):
        layers += [conv(c_in, c_out, 3, padding=1), *([nn.BatchNorm2d(c_out)] if batch_norm else []), nn.LeakyReLU(0.1)]
    return nn.Sequential(*layers)


class Paraphraser(nn.Module):
    """Convolutional autoencoder of a teacher stage; its code is the teacher's factor (paper §3.1)."""

    def __init__(self, channels: int, factor_channels: int):
        super().__init__()
        self.encoder = conv_stack([channels, channels, factor_channels, factor_channels])
        self.decoder = conv_stack([factor_channels, factor_channels, channels, channels], transposed=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


def vectorised(factor: Tensor) -> Tensor:
    """The paper's factor (Eq. 3): the whole C x H x W map as one vector per example."""
    return factor.flatten(1)


def channel_pooled(factor: Tensor) -> Tensor:
    """RepDistiller's factor (``distiller_zoo/FT.py``, p1=2): the channel mean of the squared map, H x W per example."""
    return factor.pow(2).mean(dim=1).flatten(1)


FACTORS = {"repdistiller": channel_pooled, "paper": vectorised}


@fp32
def factor_distance(student_factor: Tensor, teacher_factor: Tensor, variant: str) -> Tensor:
    """|| F_T / ||F_T||_2 - F_S / ||F_S||_2 ||_1 per element, averaged (paper Eq. 3, p=1).

    ``variant`` picks how a factor becomes a vector (see ``FACTORS``); eps-guarded normalisation
    keeps a zero factor at zero. Factors of different resolution are pooled to the smaller one.
    """
    student_factor, teacher_factor = align_spatial(student_factor, teacher_factor)
    as_vector = FACTORS[variant]
    return F.l1_loss(F.normalize(as_vector(student_factor), dim=1), F.normalize(as_vector(teacher_factor), dim=1))


@register_loss("ft")
class FT(DistillLoss):
    """Factor transfer: a student translator imitates the teacher's paraphrased factors.

    ``prepare`` is the paper's paraphraser pre-training stage: for ``init_epochs`` epochs
    (RepDistiller: 30) a paraphraser (3 convs down to ``rate`` x channels, 3 transposed convs
    back, LeakyReLU 0.1, no BN: RepDistiller ``Paraphraser`` as ``train_student.py`` builds it)
    learns to reconstruct the teacher's ``stage`` with the paper's L2 reconstruction loss, by SGD
    at ``init_lr`` (RepDistiller ``helper/pretrain.py``: 0.01 for ResNet/WRN students, the
    student's learning rate otherwise), and frozen otherwise. During training a translator (the
    encoder's three convs on the student stage, each followed by BN: RepDistiller ``Translator``)
    is learned with the factor loss. ``stage`` defaults to -1, the last stage before pooling:
    RepDistiller's ``feat[-2]``. ``rate=0.5`` is the paper's paraphrase rate k. ``variant``
    "repdistiller" (default) compares channel-pooled squared factors, for which the CRD protocol's
    weight 200 was tuned; "paper" compares the vectorised factors of the paper's Eq. 3.

    Reference implementation: HobbitLong/RepDistiller, distiller_zoo/FT.py, models/util.py
    (Paraphraser, Translator), helper/pretrain.py.
    Deviations: none by default; ``variant="paper"`` follows the paper's vectorised factor instead.
    """

    needs = frozenset({Need.FEATURES})
    description = "factor transfer through a pre-trained paraphraser (Kim et al. 2018)"

    def __init__(self, ctx: LossContext, *, stage: int, rate: float, init_epochs: int, init_lr: float, variant: str):
        super().__init__(ctx)
        self.variant = choice("ft: variant", variant, FACTORS)
        if isinstance(stage, bool) or not isinstance(stage, int):
            raise ConfigError(f"ft: stage must be one integer stage index such as -1, got {stage!r}")
        self.s_stage, self.t_stage = stage_index(ctx.student, stage), stage_index(ctx.teacher, stage)
        if not 0 < positive("ft: rate", rate) <= 1:
            raise ConfigError(f"ft: rate must be in (0, 1] (the paper uses 0.5), got {rate}")
        self.init_epochs = count("ft: init_epochs", init_epochs, 0)
        self.init_lr = positive("ft: init_lr", init_lr)
        t_channels = ctx.teacher.features[self.t_stage][0]
        factor_channels = max(1, int(t_channels * rate))
        self.paraphraser = Paraphraser(t_channels, factor_channels).requires_grad_(False)  # trained in prepare only
        s_channels = ctx.student.features[self.s_stage][0]
        self.translator = conv_stack([s_channels, s_channels, factor_channels, factor_channels], batch_norm=True)

    def prepare(self, prep: Preparation) -> None:
        def objective(images: Tensor) -> Tensor:
            target = teacher_features(prep, images)[self.t_stage]
            return F.mse_loss(self.paraphraser(target), target)

        self.paraphraser.requires_grad_(True)
        train_stage(prep, [self.paraphraser], self.init_epochs, objective, lr=self.init_lr)
        self.paraphraser.requires_grad_(False)

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> Tensor:
        teacher_factor = self.paraphraser.encoder(teacher.features[self.t_stage])
        return factor_distance(self.translator(student.features[self.s_stage]), teacher_factor, self.variant)
