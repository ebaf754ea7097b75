"""Every distillation loss, behind the one contract of ``losses.base``.

Each module of this package registers its losses with ``@register_loss``; importing the package
imports them all, so adding a loss is adding a module. Plugins come through the entry-point group
``distillbench.losses``.
"""

import importlib
import pkgutil

from losses.base import (
    LOSSES,
    Batch,
    DistillLoss,
    LossContext,
    ModelShapes,
    Need,
    Outputs,
    Preparation,
    register_loss,
    stage_index,
    total,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "LOSSES",
    "Batch",
    "DistillLoss",
    "LossContext",
    "ModelShapes",
    "Need",
    "Outputs",
    "Preparation",
    "register_loss",
    "stage_index",
    "total",
]
