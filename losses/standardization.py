"""Sun, Ren, Li, Wang & Cao, "Logit Standardization in Knowledge Distillation" (CVPR 2024).

Not a loss of its own but a pre-process of both models' logits that composes with any logit loss:
``standardized(KD)`` is KD reading z-scored logits. The paper's combinations are registered here
(``kd-ls``, ``dkd-ls``) and beside the loss they wrap when that lives elsewhere (``mlkd-ls``).
"""

from __future__ import annotations

from torch import Tensor

from losses.base import MODEL_NEEDS, Batch, DistillLoss, Need, Outputs, register_loss
from losses.dkd import DKD
from losses.kd import KD
from losses.numerics import fp32

EPS = 1e-7  # added to the standard deviation, as the authors' ``normalize`` does


@fp32
def zscore(logits: Tensor) -> Tensor:
    """Each row centred and divided by ``EPS`` + its unbiased (Bessel-corrected) standard deviation.

    The unbiased estimate and the epsilon outside the square root are what the authors' code uses
    (``logit.std(dim=-1)``, ``(logit - mean) / (1e-7 + stdv)``); a constant row maps to zeros.
    """
    return (logits - logits.mean(dim=1, keepdim=True)) / (EPS + logits.std(dim=1, keepdim=True))


def standardized(base: type[DistillLoss], name: str) -> type[DistillLoss]:
    """Register ``base`` reading z-scored student and teacher logits as the loss ``name``.

    ``base`` keeps its hyperparameters; its temperature becomes the paper's base temperature,
    which multiplies each row's own standard deviation (the paper's sample-wise temperature).
    """
    if Need.LOGITS not in base.needs:
        raise TypeError(f"logit standardization needs a logit loss; {base.__name__} does not read logits")

    carried = [need.value for need in base.needs & MODEL_NEEDS if need is not Need.LOGITS]

    def standardize(outputs: Outputs) -> Outputs:
        return Outputs(logits=zscore(outputs.logits), **{field: getattr(outputs, field) for field in carried})

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch):
        return base.forward(self, standardize(student), standardize(teacher), batch)

    doc = (f"{base.__name__} on z-scored logits (logit standardization, Sun et al. CVPR 2024).\n\n"
           f"Each row of the student's and the teacher's logits is standardised by ``zscore`` before\n"
           f"{base.__name__}'s own computation; everything else is {base.__name__} unchanged.\n\n"
           "Reference implementation: sunshangquan/logit-standardization-KD, mdistiller/distillers/"
           f"{base.__name__}.py (``normalize``) and tools/train.py (``--logit-stand``)\n"
           "Deviations: none")
    cls = type(f"{base.__name__}LS", (base,), {
        "forward": forward,
        "__doc__": doc,
        "__qualname__": f"{base.__name__}LS",
        "description": f"{base.description}, on z-scored logits (Sun et al. 2024)",
    })
    return register_loss(name)(cls)


KDLS = standardized(KD, "kd-ls")
DKDLS = standardized(DKD, "dkd-ls")
