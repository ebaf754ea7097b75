"""Kim, Park & Kwak, "Paraphrasing Complex Network: Network Compression via Factor Transfer" (NeurIPS 2018)."""

import torch.nn.functional as F
from torch import Tensor, nn

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, Preparation, register_loss, stage_index
from losses.checks import count, positive
from losses.connectors import align_spatial
from losses.numerics import fp32
from losses.pretraining import teacher_features, train_stage
from registry import ConfigError


def conv_stack(widths: list[int], transposed: bool = False) -> nn.Sequential:
    """3x3 stride-1 (transposed) convolutions, each followed by LeakyReLU(0.1), as in the authors' code."""
    conv = nn.ConvTranspose2d if transposed else nn.Conv2d
    layers: list[nn.Module] = []
    for c_in, c_out in zip(widths, widths[1:]):
        layers += [conv(c_in, c_out, 3, padding=1), nn.LeakyReLU(0.1)]
    return nn.Sequential(*layers)


class Paraphraser(nn.Module):
    """Convolutional autoencoder of a teacher stage; its code is the teacher's factor (paper §3.1)."""

    def __init__(self, channels: int, factor_channels: int):
        super().__init__()
        self.encoder = conv_stack([channels, channels, factor_channels, factor_channels])
        self.decoder = conv_stack([factor_channels, factor_channels, channels, channels], transposed=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


@fp32
def factor_distance(student_factor: Tensor, teacher_factor: Tensor) -> Tensor:
    """|| F_T / ||F_T||_2 - F_S / ||F_S||_2 ||_1 per element, averaged (paper Eq. 3, p=1).

    Factors are vectorised per example; eps-guarded normalisation keeps a zero factor at zero.
    Factors of different resolution are pooled to the smaller one.
    """
    student_factor, teacher_factor = align_spatial(student_factor, teacher_factor)
    return F.l1_loss(F.normalize(student_factor.flatten(1), dim=1), F.normalize(teacher_factor.flatten(1), dim=1))


@register_loss("ft")
class FT(DistillLoss):
    """Factor transfer: a student translator imitates the teacher's paraphrased factors.

    ``prepare`` is the paper's paraphraser pre-training stage: for ``init_epochs`` epochs
    (RepDistiller: 30) a paraphraser (3 convs down to ``rate`` x channels, 3 transposed convs
    back, LeakyReLU 0.1, no BN: authors' ``FeatureProjection.py``) learns to reconstruct the
    teacher's ``stage`` with the paper's L2 reconstruction loss, by SGD at ``init_lr`` (0.01,
    RepDistiller ``helper/pretrain.py`` for its ResNet/WRN students), and frozen otherwise.
    During training a translator (same three convs on the student stage) is learned with the
    factor loss. ``stage`` defaults to -1, the last stage before pooling: RepDistiller's
    ``feat[-2]``. ``rate=0.5`` is the paper's paraphrase rate k. The CRD protocol's weight 200 was
    tuned for RepDistiller's variant, which compares channel-pooled squared factors; this is the
    paper's (and authors' ``utils.FT``) vectorised factor.
    """

    needs = frozenset({Need.FEATURES})
    description = "factor transfer through a pre-trained paraphraser (Kim et al. 2018)"

    def __init__(self, ctx: LossContext, *, stage: int, rate: float, init_epochs: int, init_lr: float):
        super().__init__(ctx)
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
        self.translator = conv_stack([s_channels, s_channels, factor_channels, factor_channels])

    def prepare(self, prep: Preparation) -> None:
        def objective(images: Tensor) -> Tensor:
            target = teacher_features(prep, images)[self.t_stage]
            return F.mse_loss(self.paraphraser(target), target)

        self.paraphraser.requires_grad_(True)
        train_stage(prep, [self.paraphraser], self.init_epochs, objective, lr=self.init_lr)
        self.paraphraser.requires_grad_(False)

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> Tensor:
        teacher_factor = self.paraphraser.encoder(teacher.features[self.t_stage])
        return factor_distance(self.translator(student.features[self.s_stage]), teacher_factor)
