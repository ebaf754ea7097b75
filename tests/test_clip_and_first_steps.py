"""Gradient clipping as a recorded training option, and the first steps' terms, logit scale and gradient
norm kept in the run's config, each against the same step computed by hand."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F

from bench.training.cohort import FIRST_STEPS, Acceleration, new_student
from bench.recipes.resolve import TrainSettings, resolve_loss
from bench.data.base import DatasetInfo
from bench.models.network import create_network, probe_shapes
from helpers import read_runs, synthetic_run
from losses import LOSSES, LossContext, Outputs

INFO = DatasetInfo("tiny", 5, 3, 16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), augment="none")
CPU = torch.device("cpu")


def vanilla_student(clip_grad: float | None):
    torch.manual_seed(0)
    network, _ = create_network("test_resnet", INFO)
    shapes = probe_shapes(network, INFO, CPU)
    settings = TrainSettings(epochs=1, batch_size=8, lr=0.05, momentum=0.9, weight_decay=0.0, milestones=(), gamma=0.1,
                             clip_grad=clip_grad)
    spec = resolve_loss("vanilla", {}, {})
    return new_student("vanilla", 0, network, LOSSES.get("vanilla")(LossContext(shapes, shapes, 64)), settings,
                       spec.weight, spec.ce_weight)


@pytest.mark.parametrize("clip_grad", [None, 0.05])
def test_the_first_step_is_recorded_and_clipped_as_computed_by_hand(clip_grad):
    student = vanilla_student(clip_grad)
    reference = copy.deepcopy(student.network)
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(8) % 5
    student.network.train(), reference.train()
    logits = reference.extract(images, frozenset()).logits
    ce = F.cross_entropy(logits, labels)
    ce.backward()
    grads = [p.grad for p in reference.parameters() if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]))
    expected = [p.detach() - 0.05 * p.grad * min(1.0, clip_grad / float(norm) if clip_grad else 1.0)
                for p in reference.parameters()]  # SGD's first step: momentum buffer = gradient

    student.train_step(images, labels, torch.arange(8), Outputs(), 0, 0, Acceleration())
    step = student.first_steps[0]
    assert float(step["terms"]["ce"]) == pytest.approx(ce.item(), rel=1e-5)
    assert float(step["logit_std"]) == pytest.approx(logits.std().item(), rel=1e-5)
    assert float(step["logit_mean"]) == pytest.approx(logits.mean().item(), abs=1e-6)
    assert float(step["grad_norm"]) == pytest.approx(float(norm), rel=1e-5)  # before clipping
    for after, want in zip(student.network.parameters(), expected):
        torch.testing.assert_close(after.detach(), want, rtol=1e-4, atol=1e-6)


def test_only_the_first_steps_of_the_first_epoch_are_kept():
    student = vanilla_student(None)
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    for step in range(FIRST_STEPS + 3):
        student.train_step(images, torch.arange(8) % 5, torch.arange(8), Outputs(), 0, step, Acceleration())
    assert len(student.first_steps) == FIRST_STEPS and all("grad_norm" in s for s in student.first_steps)


def test_clip_grad_is_in_the_run_id_and_the_row_only_when_set(tmp_path, cli, teacher_cache):
    common = ["--losses", "kd", "--protocol", "fast"]
    assert cli(*synthetic_run(tmp_path, teacher_cache, *common)).code == 0
    assert cli(*synthetic_run(tmp_path, teacher_cache, *common, "--clip-grad", "0.5")).code == 0
    rows = read_runs(tmp_path / "results")
    plain, clipped = rows.sort_values("clip_grad", na_position="first").itertuples()
    assert plain.run_id != clipped.run_id and clipped.clip_grad == 0.5 and plain.clip_grad != plain.clip_grad  # NaN
    configs = tmp_path / "results" / "synthetic" / "configs"
    plain_config, clipped_config = (json.loads((configs / f"{r.run_id}.json").read_text()) for r in (plain, clipped))
    assert "clip_grad" not in plain_config["train"] and clipped_config["train"]["clip_grad"] == 0.5
    diagnostics = plain_config["diagnostics"]
    assert len(diagnostics["epoch_terms"]) == 1 and set(diagnostics["epoch_terms"][0]) == {"ce", "loss", "objective"}
    assert len(diagnostics["first_steps"]) == min(FIRST_STEPS, 256 // 32)
    assert all(step["grad_norm"] > 0 and step["logit_std"] > 0 for step in diagnostics["first_steps"])
    assert cli(*synthetic_run(tmp_path, teacher_cache, *common, "--clip-grad", "-1")).code == 2
