"""Loss-weight warm-ups: one mechanism, a fraction of the run, equal to the authors' ramps on their
CIFAR-100 schedule (ReviewKD's ``min(1, epoch / 20)`` with epochs from 0; mdistiller's DKD
``min(epoch / 20, 1)`` with epochs from 1) and scaled with the protocol on a short one."""

import pytest
import torch

from bench.recipes.resolve import dataset_recipe, resolve_loss
from losses import LOSSES, Batch, LossContext, ModelShapes, Outputs
from losses.base import total
from losses.warmup import warmup_factor
from registry import ConfigError

SHAPES = ModelShapes(features=((4, 8, 8), (5, 4, 4), (6, 2, 2)), embedding=6, num_classes=5)


def at(epoch: int, epochs: int | None = 240, step: int = 0, steps: int | None = 390) -> Batch:
    return Batch(torch.zeros(2, dtype=torch.long), torch.arange(2), epoch, torch.Generator(), epochs, step, steps)


def recipe_warmup(loss: str, dataset: str = "cifar100") -> float:
    return resolve_loss(loss, dataset_recipe(dataset), {}).params["warmup"]


@pytest.mark.parametrize("epoch", [0, 1, 19, 20, 100])
def test_reviewkd_ramp_is_the_authors_on_240_epochs(epoch):
    """dvlab-research/ReviewKD CIFAR-100/train.py: ``for epoch in range(args.epochs)`` ...
    ``min(1, epoch / args.kd_warm_up)`` with ``--kd-warm-up 20``."""
    authors = min(1, epoch / 20)
    for step in (0, 200):  # computed once per epoch there: the same factor at every step of an epoch
        assert warmup_factor(at(epoch, step=step), recipe_warmup("reviewkd"), first=0) == pytest.approx(authors,
                                                                                                       abs=1e-12)
    assert warmup_factor(at(20), recipe_warmup("reviewkd"), first=0) == 1.0


@pytest.mark.parametrize("loss", ["dkd", "dkd-ls"])
@pytest.mark.parametrize("epoch", [0, 1, 19, 20])
def test_dkd_ramp_is_mdistillers_on_240_epochs(loss, epoch):
    """mdistiller: ``epoch = 1; while epoch < MAX_EPOCH + 1`` and DKD's ``min(kwargs["epoch"] / self.warmup, 1.0)``,
    ``CFG.DKD.WARMUP = 20``: the harness's 0-based epoch e is mdistiller's e + 1."""
    mdistiller = min((epoch + 1) / 20, 1.0)
    assert warmup_factor(at(epoch), recipe_warmup(loss), first=1) == pytest.approx(mdistiller, abs=1e-12)


def outputs(seed: int) -> Outputs:
    g = torch.Generator().manual_seed(seed)
    return Outputs(logits=torch.randn(2, 5, generator=g), embedding=torch.randn(2, 6, generator=g),
                   features=tuple(torch.randn(2, *shape, generator=g) for shape in SHAPES.features))


@pytest.mark.parametrize(("loss", "first"), [("dkd", 1), ("dkd-ls", 1), ("reviewkd", 0)])
def test_each_loss_applies_its_authors_ramp(loss, first):
    """At epoch 1 of 240 the term is (1 + first) / 20 of its full value."""
    torch.manual_seed(0)
    built = LOSSES.get(loss)(LossContext(SHAPES, SHAPES, 8), **resolve_loss(loss, dataset_recipe("cifar100"), {}).params)
    s, t = outputs(1), outputs(2)
    value = lambda epoch: total(built(s, t, at(epoch))).item()
    assert value(1) == pytest.approx((1 + first) / 20 * value(20), rel=1e-5)


def test_a_warm_up_scales_with_the_run():
    """The same fraction on a one-epoch run of 468 steps ramps over its first 39 steps (1/12 of them)."""
    fraction = recipe_warmup("reviewkd", "fashion-mnist")
    assert fraction == recipe_warmup("reviewkd") == recipe_warmup("dkd", "fashion-mnist") == 20 / 240
    factors = [warmup_factor(at(0, epochs=1, step=s, steps=468), fraction, first=0) for s in (0, 13, 26, 39, 400)]
    assert factors == pytest.approx([0, 1 / 3, 2 / 3, 1, 1])
    assert warmup_factor(at(0, epochs=1, step=0, steps=468), fraction, first=1) == pytest.approx(1 / 39)


def test_no_warm_up_or_no_known_run_length_is_weight_one():
    assert warmup_factor(at(0), 0.0, first=0) == 1.0
    assert warmup_factor(at(0, epochs=None), 1 / 12, first=0) == 1.0  # a loss called outside a run


@pytest.mark.parametrize("warmup", [-0.1, 1.5, 20, "1/12", True])
def test_a_warm_up_outside_the_run_is_a_config_error(warmup):
    with pytest.raises(ConfigError, match=r"reviewkd: warmup \(a fraction of the run\) must be"):
        LOSSES.get("reviewkd")(LossContext(SHAPES, SHAPES, 8), stages=[-1], warmup=warmup)


def test_the_training_step_tells_the_loss_where_it_is_in_the_run():
    """A cohort student hands its loss the epoch, the run's epochs, the step and the steps per epoch."""
    from bench.training.cohort import Acceleration, new_student
    from bench.recipes.resolve import TrainSettings

    seen = []

    class Recorder(LOSSES.get("vanilla")):
        def forward(self, student, teacher, batch):
            seen.append((batch.epoch, batch.epochs, batch.step, batch.steps))
            return torch.zeros(())

    settings = TrainSettings(epochs=3, batch_size=2, lr=0.1, momentum=0.9, weight_decay=0.0, milestones=(),
                             gamma=0.1)
    student = new_student("recorder", 0, torch.nn.Linear(1, 1), Recorder(LossContext(SHAPES, SHAPES, 8)), settings,
                          1.0, 1.0, steps_per_epoch=7)
    student.objective(outputs(1), outputs(2), torch.zeros(2, dtype=torch.long), torch.arange(2), 2, 5,
                      Acceleration(amp=False, channels_last=False))
    assert seen == [(2, 3, 5, 7)]
