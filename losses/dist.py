"""Huang, You, Wang, Qian & Xu, "Knowledge Distillation from A Stronger Teacher" (NeurIPS 2022)."""

from torch import Tensor

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, register_loss
from losses.checks import non_negative, positive
from losses.numerics import fp32

EPS = 1e-8  # the authors' guard: a constant row (zero variance) has correlation 0, not 0/0


def pearson_rows(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b`` (paper Eq. 6)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + EPS)


@fp32
def relation_losses(student_logits: Tensor, teacher_logits: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    """(inter-class, intra-class) relation losses, each tau^2 (1 - mean Pearson correlation)."""
    y_s = (student_logits / tau).softmax(dim=1)
    y_t = (teacher_logits / tau).softmax(dim=1)
    inter = 1 - pearson_rows(y_s, y_t).mean()
    intra = 1 - pearson_rows(y_s.T, y_t.T).mean()
    return tau**2 * inter, tau**2 * intra


@register_loss("dist")
class DIST(DistillLoss):
    """Relational matching of predictions: inter-class (per example) and intra-class (per class).

    tau^2 (beta (1 - mean_i rho(Y_s[i,:], Y_t[i,:])) + gamma (1 - mean_j rho(Y_s[:,j], Y_t[:,j])))
    on softmax(logits / tau) (paper Eq. 7-10). beta=gamma=1 are the defaults of the authors'
    ``DIST``; the recipe sets the CIFAR-100 loss weight 2 and tau 4 (``dist_cifar.yaml``) and
    ImageNet's tau 1 (the paper's ImageNet setting).

    Reference implementation: hunto/image_classification_sota, lib/models/losses/dist_kd.py (DIST).
    Deviations: none.
    """

    needs = frozenset({Need.LOGITS})
    batchwise = True
    description = "inter- and intra-class Pearson relations of predictions (Huang et al. 2022)"

    def __init__(self, ctx: LossContext, *, beta: float, gamma: float, tau: float):
        super().__init__(ctx)
        self.beta = non_negative("dist: beta", beta)
        self.gamma = non_negative("dist: gamma", gamma)
        self.tau = positive("dist: tau", tau)

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> dict[str, Tensor]:
        inter, intra = relation_losses(student.logits, teacher.logits, self.tau)
        return {"inter": self.beta * inter, "intra": self.gamma * intra}
