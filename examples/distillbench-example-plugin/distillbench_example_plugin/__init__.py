"""Cosine-similarity knowledge distillation, written as a distillbench plugin.

Everything here goes through the public loss contract (``losses``): declare what the loss reads,
take hyperparameters as keyword-only arguments, return a scalar. A plugin has no recipe file, so
every hyperparameter has a default; ``bench run --set cosine-kd.T=2`` overrides it.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from losses import Batch, DistillLoss, LossContext, Need, Outputs
from registry import ConfigError


class CosineKD(DistillLoss):
    """``1 - cos(softmax(z_s / T), softmax(z_t / T))``, averaged over the batch.

    Matching the direction of the softened class distributions rather than their KL divergence
    ignores how confident the two models are overall and keeps only which classes they rank
    together. The value lies in [0, 1) and is 0 exactly when the distributions are equal.
    """

    needs = frozenset({Need.LOGITS})
    description = "1 - cosine similarity of temperature-softened class distributions (example plugin)"

    def __init__(self, ctx: LossContext, *, T: float = 4.0):
        super().__init__(ctx)
        if isinstance(T, bool) or not isinstance(T, (int, float)) or not T > 0:
            raise ConfigError(f"cosine-kd: T must be a number > 0, got {T!r}")
        self.T = float(T)

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> Tensor:
        # Probabilities and their cosine in float32 even when the models run under autocast.
        with torch.autocast(student.logits.device.type, enabled=False):
            p_s = F.softmax(student.logits.float() / self.T, dim=1)
            p_t = F.softmax(teacher.logits.float() / self.T, dim=1)
            return (1 - F.cosine_similarity(p_s, p_t, dim=1)).mean()
