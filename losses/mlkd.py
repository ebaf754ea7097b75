"""Jin, Wang & Lin, "Multi-Level Logit Distillation" (CVPR 2023)."""

from typing import ClassVar

import torch
from torch import Tensor

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, register_loss
from losses.checks import positive
from registry import ConfigError
from losses.kd import kd_divergence
from losses.numerics import fp32
from losses.standardization import zscore


def _gram_gap(p_s: Tensor, p_t: Tensor) -> Tensor:
    """Sum of squared differences between the two models' Gram matrices ``p p^T``."""
    return (p_t @ p_t.T - p_s @ p_s.T).pow(2).sum()


@fp32
def batch_level(student_logits: Tensor, teacher_logits: Tensor, T: float) -> Tensor:
    """Sample-by-sample correlation of the predictions at ``T``, squared gap summed, over the batch size."""
    p_s, p_t = (torch.softmax(z / T, dim=1) for z in (student_logits, teacher_logits))
    return _gram_gap(p_s, p_t) / student_logits.shape[0]


@fp32
def class_level(student_logits: Tensor, teacher_logits: Tensor, T: float) -> Tensor:
    """Class-by-class correlation of the predictions at ``T``, squared gap summed, over the class count."""
    p_s, p_t = (torch.softmax(z / T, dim=1).T for z in (student_logits, teacher_logits))
    return _gram_gap(p_s, p_t) / student_logits.shape[1]


@fp32
def below_median_shares(teacher_logits: Tensor) -> tuple[Tensor, Tensor]:
    """Shares of examples and of classes whose teacher confidence is at most its batch median.

    Examples are ranked by the teacher's top probability, classes by their summed probability
    over the batch; the median interpolates linearly (numpy's ``percentile(..., 50)``).
    """
    p_t = torch.softmax(teacher_logits, dim=1)

    def share(confidence: Tensor) -> Tensor:
        return (confidence <= confidence.quantile(0.5)).float().mean()

    return share(p_t.max(dim=1).values), share(p_t.sum(dim=0))


@register_loss("mlkd")
class MLKD(DistillLoss):
    """Instance-, batch- and class-level alignment of predictions, each summed over ``temperatures``.

    Follows the authors' ``KD_ours.forward_train``: their confidence masks multiply terms that are
    already batch-reduced, so each mask acts as the share of examples (instance and batch level)
    or classes (class level) at or below the teacher's median confidence. The instance level adds
    the unmasked KD of their second (strongly augmented) view — at their first three temperatures
    (4, 3, 5); at 2 and 6 their "strong" terms read the weak view; the strongly augmented view's batch
    and class terms are computed there but not returned, so they are absent here too. Defaults:
    temperatures 4 (``CFG.KD.TEMPERATURE``), 3, 5, 2, 6; weight 0.9 (``CFG.KD.LOSS.KD_WEIGHT``);
    CE 0.2 (the harness averages CE over the two views: their 0.1 on each).

    With few classes the authors' weights swamp cross-entropy (why mlkd collapses on Fashion-MNIST,
    results/fashion-mnist/README.md): the batch- and class-level terms sum squared Gram gaps, and the
    class Gram ``p^T p`` grows like B/C per entry, so its gradient grows like (B/C)^2. On the logits of a
    random student against a confident teacher, the class term's gradient is 6.7x CE's at C = 10,
    B = 128, but 0.001x at C = 100, B = 64 (their CIFAR-100 setting); the instance term is 53x CE's
    at C = 10 and 14x at C = 100. No NaN arises; the student is driven to one class within tens of steps.

    Reference implementation: Jin-Ying/Multi-Level-Logit-Distillation, mdistiller/distillers/KD_ours.py
    Deviations: the strong view is the run's choice (``bench run --strong-view``, recorded in the row),
    off by default so that MLKD is compared on the batches every other loss sees; without it the strong
    view's KD is computed on the batch's view. Their CIFAR-100 numbers also use a learning rate of
    0.025 (configs/cifar100/ours/*.yaml), a training-recipe setting, not a loss one.
    """

    needs = frozenset({Need.LOGITS, Need.STRONG_VIEW})
    # the authors' strong-view KD reads the strong view at their first three temperatures (4, 3, 5) only
    strong_temperatures: ClassVar[int] = 3
    description = "multi-level logit distillation: instance, batch and class alignment (Jin et al. 2023)"
    standardize_instance: ClassVar[bool] = False

    def __init__(self, ctx: LossContext, *, temperatures: list[float]):
        super().__init__(ctx)
        if not temperatures:
            raise ConfigError(f"{type(self).__name__.lower()}: temperatures must list at least one temperature")
        self.temperatures = [positive("mlkd: temperatures", T) for T in temperatures]

    def _instance_terms(self, student_logits: Tensor, teacher_logits: Tensor, temperatures: list[float]) -> list[Tensor]:
        s, t = (zscore(student_logits), zscore(teacher_logits)) if self.standardize_instance else \
            (student_logits, teacher_logits)
        return [kd_divergence(s, t, T) for T in temperatures]

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> dict[str, Tensor]:
        s, t = student.logits, teacher.logits
        sample_share, class_share = below_median_shares(t)
        weak = self._instance_terms(s, t, self.temperatures)
        if student.strong is None:  # the batch's view stands in for the strong one
            instance = (sample_share + 1) * sum(weak)
        else:  # the weak view masked, plus the strong view's KD (the weak view's at the last temperatures)
            first = self.temperatures[:self.strong_temperatures]
            strong = self._instance_terms(student.strong.logits, teacher.strong.logits, first)
            instance = sample_share * sum(weak) + sum(strong) + sum(weak[len(first):])
        return {
            "instance": instance,
            "batch": sample_share * sum(batch_level(s, t, T) for T in self.temperatures),
            "class": class_share * sum(class_level(s, t, T) for T in self.temperatures),
        }


@register_loss("mlkd-ls")
class MLKDLS(MLKD):
    """MLKD with logit standardization (Sun et al. CVPR 2024) on the instance level only.

    The authors' MLKD with ``--logit-stand`` z-scores the logits inside ``kd_loss`` alone; the batch-
    and class-level terms keep raw logits, so this is not ``standardized(MLKD)``. Their base
    temperature 2 replaces the first of MLKD's temperatures (so 2 appears twice) and the KD weight is 9.

    On Fashion-MNIST this collapses every seed (results/fashion-mnist/README.md): weight 9 on z-scored
    instance terms gives them 270x CE's gradient on a random student's logits at C = 10, B = 128 (86x at
    C = 100, B = 64), and the raw-logit class term, at 0.02x CE's on CIFAR-100, is 110x CE's here.

    Reference implementation: sunshangquan/logit-standardization-KD, mdistiller/distillers/MLKD.py
    Deviations: the strong view is the run's choice, as for MLKD.
    """

    description = "MLKD with z-scored logits at the instance level (Sun et al. 2024)"
    standardize_instance = True
