"""Yang, Martinez, Bulat & Tzimiropoulos, "Knowledge Distillation via Softmax Regression
Representation Learning" (ICLR 2021)."""

import math

import torch.nn.functional as F
from torch import Tensor, nn

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, Preparation, register_loss
from losses.checks import choice, non_negative, positive
from losses.kd import kd_divergence
from losses.teacher_head import copy_teacher_classifier, hold_teacher_classifier, teacher_classifier

# where the connector sits: on the map the student's embedding is pooled from, pooled afterwards (the authors'), or on
# the pooled vector as a 1x1 map (SimKD's copy of SRRL)
LAYOUTS = ("feature_map", "pooled")


@register_loss("srrl")
class SRRL(DistillLoss):
    """The student's final feature map, mapped to the teacher's width and average-pooled, matched to the
    teacher's pooled features (feature term) and passed through the teacher's frozen classifier to
    match the teacher's logits (softmax-regression term); both are MSEs over every element.

    The connector is 1x1 conv (no bias) -> BN -> ReLU on the map the student's embedding is pooled from
    (``Need.FEATURE_MAP``: the authors' ``fea``, layer4's output before the avgpool), its conv drawn from
    normal(0, sqrt(2 / out_channels)), pooled afterwards (``layout = "feature_map"``: the authors'
    ``transfer_conv`` and ``statm_loss``, whose squared gap of spatial means is the MSE of the pooled
    vectors). ``layout = "pooled"`` is SimKD's copy: the connector on the pooled vector as a 1x1 map,
    PyTorch's default initialisation. The teacher's classifier is copied in ``prepare`` into
    buffers this loss owns (in its state dict and checkpoints, outside the optimizer), which needs a
    teacher whose classifier is one linear layer on its pooled features. Defaults follow the
    authors: loss weight 1, CE 1, no KD term (``kd_weight = 0``: ``loss_ce + loss_kd * args.weight``
    with ``--weight`` 1); SimKD's CIFAR-100 command adds KD at T=4 weight 1 (``-c 1 -d 1 -b 1``).

    Reference implementation: jingyang2017/KD_SRRL, train_imagenet_distillation.py, distiller_zoo/AIN.py,
    models/official_resnet.py; DefangChen/SimKD, models/util.py (``SRRL``), scripts/run_distill.sh (``pooled``)
    Deviations: none. The authors publish ImageNet only; CIFAR runs take their layout and weights.
    """

    needs = frozenset({Need.LOGITS, Need.FEATURE_MAP, Need.EMBEDDING})
    description = "student features through the teacher's frozen classifier (Yang et al. 2021)"

    def __init__(self, ctx: LossContext, *, kd_weight: float, T: float, layout: str = "feature_map"):
        super().__init__(ctx)
        self.kd_weight = non_negative("srrl: kd_weight", kd_weight)
        self.T = positive("srrl: T", T)
        self.layout = choice("srrl: layout", layout, LAYOUTS)
        s_dim, t_dim = ctx.student.embedding, ctx.teacher.embedding
        self.connector = nn.Sequential(nn.Conv2d(s_dim, t_dim, 1, bias=False), nn.BatchNorm2d(t_dim), nn.ReLU())
        if self.layout == "feature_map":
            nn.init.normal_(self.connector[0].weight, 0.0, math.sqrt(2.0 / t_dim))
        hold_teacher_classifier(self, ctx.teacher.num_classes, t_dim)

    def prepare(self, prep: Preparation) -> None:
        copy_teacher_classifier(self, "srrl", prep.teacher)

    def mapped(self, student: Outputs) -> Tensor:
        """The student's features through the connector, pooled: [B, teacher width]."""
        if self.layout == "pooled":
            return self.connector(student.embedding[:, :, None, None]).flatten(1)
        return self.connector(student.feature_map).mean(dim=(2, 3))

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> dict[str, Tensor]:
        mapped = self.mapped(student)
        regressed = teacher_classifier(self, mapped)
        terms = {
            "feature": F.mse_loss(mapped.float(), teacher.embedding.float()),
            "regression": F.mse_loss(regressed.float(), teacher.logits.float()),
        }
        if self.kd_weight:
            terms["kd"] = self.kd_weight * kd_divergence(student.logits, teacher.logits, self.T)
        return terms
