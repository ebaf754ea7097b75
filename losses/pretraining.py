"""The initialisation stages some losses run before distillation.

AB and FSP first train the student body with their loss alone; FT first trains a paraphraser
on the teacher's features. The loop is RepDistiller's ``helper/pretrain.py`` ``init()``: SGD with
the recipe's momentum and weight decay, for ``epochs`` passes over the training data, updating
only the modules the stage names (parameters that receive no gradient, like the student's
classifier, are left untouched).
"""

from __future__ import annotations

from typing import Callable, ClassVar, Sequence

import torch
from torch import Tensor, nn

from losses.base import Batch, DistillLoss, Need, Outputs, Preparation
from registry import ConfigError

FEATURES = frozenset({Need.FEATURES})


def stage_features(prep: Preparation, model: nn.Module, images: Tensor, preact: bool = False) -> tuple[Tensor, ...]:
    """Every stage's features; with ``preact`` each stage after the stem read before its final ReLU (the
    CIFAR zoo's pre-activation taps, ``Need.PREACT_FEATURES``), the stem as it is."""
    if not preact:
        return prep.extract(model, images, FEATURES).features
    out = prep.extract(model, images, FEATURES | {Need.PREACT_FEATURES})
    return out.features[:len(out.features) - len(out.preact_features)] + out.preact_features


def teacher_features(prep: Preparation, images: Tensor, preact: bool = False) -> tuple[Tensor, ...]:
    with torch.no_grad():
        return stage_features(prep, prep.teacher, images, preact)


def student_features(prep: Preparation, images: Tensor, preact: bool = False) -> tuple[Tensor, ...]:
    return stage_features(prep, prep.student, images, preact)


def train_stage(prep: Preparation, modules: Sequence[nn.Module], epochs: int,
                objective: Callable[[Tensor], Tensor], lr: float | None = None) -> None:
    """Minimise ``objective(images)`` over ``epochs`` passes of ``prep.batches()``, updating ``modules``.

    ``lr`` defaults to the recipe's training learning rate, as in RepDistiller.
    """
    if epochs == 0:
        return
    settings = prep.params
    needed = ("momentum", "weight_decay") if lr is not None else ("lr", "momentum", "weight_decay")
    missing = [k for k in needed if k not in settings]
    if missing:
        raise ConfigError(f"the initialisation stage needs training settings {', '.join(missing)}; "
                          f"the recipe gave: {', '.join(sorted(settings)) or 'none'}")
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=float(settings["lr"] if lr is None else lr),
                                momentum=float(settings["momentum"]), weight_decay=float(settings["weight_decay"]))
    modes = [m.training for m in modules]
    for module in modules:
        module.train()
    for _ in range(epochs):
        for images, _labels, _indices in prep.batches():
            optimizer.zero_grad(set_to_none=True)
            objective(images).backward()
            optimizer.step()
    for module, mode in zip(modules, modes):
        module.train(mode)


class StudentInitialisation(DistillLoss):
    """A loss that is only an initialisation stage of the student (AB, FSP), then cross-entropy.

    ``prepare`` trains the student and the loss's ``connectors`` on ``transfer_loss`` for
    ``init_epochs`` epochs at the recipe's learning rate; afterwards the loss contributes nothing,
    as in the papers and RepDistiller (its ``loss_kd = 0`` for these methods).
    """

    needs = frozenset()  # nothing after the stage, which extracts its own features
    # read each model's stages before their final ReLU where the model offers that (AB, as RepDistiller's preact=True)
    reads_preact: ClassVar[bool] = False
    connectors: nn.Module
    init_epochs: int

    def transfer_loss(self, student: tuple[Tensor, ...], teacher: tuple[Tensor, ...]) -> Tensor:
        """The initialisation objective on one batch of stage features."""
        raise NotImplementedError

    def prepare(self, prep: Preparation) -> None:
        s_preact, t_preact = (self.reads_preact and bool(shapes.preact_features)
                              for shapes in (self.ctx.student, self.ctx.teacher))

        def objective(images: Tensor) -> Tensor:
            return self.transfer_loss(student_features(prep, images, s_preact), teacher_features(prep, images, t_preact))

        train_stage(prep, [prep.student, self.connectors], self.init_epochs, objective)

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> Tensor:
        return torch.zeros((), device=batch.generator.device)
