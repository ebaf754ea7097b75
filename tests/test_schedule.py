"""The learning-rate schedules a recipe can name: the step decay per epoch, the cosine per batch."""

from __future__ import annotations

import math

import pytest
import torch

from bench.recipes.resolve import TrainSettings
from bench.training.schedule import Schedule
from registry import ConfigError

LR, EPOCHS, STEPS = 0.1, 2, 5


def rates(kind: str, milestones=(1,)) -> list[float]:
    """The rate each batch of a 2-epoch, 5-batch-per-epoch run trains at."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    schedule = Schedule(optimizer, kind, EPOCHS, milestones, 0.1, STEPS)
    seen = []
    for _ in range(EPOCHS):
        for _ in range(STEPS):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.after_batch()
        schedule.after_epoch()
    return seen


def test_cosine_anneals_batch_by_batch_to_zero():
    total = EPOCHS * STEPS
    expected = [LR * (1 + math.cos(math.pi * t / total)) / 2 for t in range(total)]  # SGDR without restarts
    assert rates("cosine") == pytest.approx(expected, abs=1e-12)
    assert rates("cosine")[-1] < 0.03 * LR


def test_step_changes_the_rate_only_at_milestone_epochs():
    assert rates("step") == pytest.approx([LR] * STEPS + [LR * 0.1] * STEPS)


def test_a_resumed_cosine_schedule_goes_on_where_it_stopped():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    first = Schedule(optimizer, "cosine", EPOCHS, (), 0.1, STEPS)
    for _ in range(STEPS):
        optimizer.step()
        first.after_batch()
    first.after_epoch()
    state, optimizer_state = first.state_dict(), optimizer.state_dict()
    again = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    resumed = Schedule(again, "cosine", EPOCHS, (), 0.1, STEPS)
    again.load_state_dict(optimizer_state)
    resumed.load_state_dict(state)
    assert again.param_groups[0]["lr"] == pytest.approx(rates("cosine")[STEPS])


def test_an_unknown_schedule_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="unknown schedule 'linear'; expected one of: step, cosine"):
        TrainSettings(epochs=1, batch_size=8, lr=0.1, momentum=0.9, weight_decay=0.0, milestones=(), gamma=0.1,
                      schedule="linear")


def test_step_schedule_runs_keep_the_keys_they_had_before_schedules_existed():
    step = TrainSettings(epochs=1, batch_size=8, lr=0.1, momentum=0.9, weight_decay=0.0, milestones=(), gamma=0.1)
    cosine = TrainSettings(**{**step.__dict__, "schedule": "cosine"})
    assert "schedule" not in repr(step) and step.identity() == {"train": step}
    assert cosine.identity() == {"train": cosine, "schedule": "cosine"}
