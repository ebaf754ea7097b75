"""CTKD: the learnable temperature, its curriculum and its reversed gradient, pinned to the authors' code."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from losses import LOSSES, ModelShapes

SHAPES = ModelShapes(features=((3, 4, 4),), embedding=5, num_classes=6)
DEFAULTS = dict(t_start=1.0, t_end=20.0, lambda_max=1.0, curriculum_epochs=10)


def authors_cosine_decay(i: int, max_value=0.0, min_value=-1.0, num_loops=10) -> float:
    """train_student.py CosineDecay.get_value, as the CIFAR script configures it."""
    i = min(max(i, 0), num_loops)
    return (math.cos(i * math.pi / num_loops) + 1.0) * 0.5 * (max_value - min_value) + min_value


@pytest.fixture
def pair(context, outputs, batch):
    return (context(SHAPES, SHAPES, 12), outputs(SHAPES, 6, seed=1, grad=True), outputs(SHAPES, 6, seed=2),
            batch(6, num_classes=6, num_train=12))


def test_one_scalar_temperature_parameter_initialised_to_one(pair):
    """Global_T: nn.Parameter(torch.ones(1)); the temperature starts at 1 + 20 * sigmoid(1)."""
    loss = LOSSES.get("ctkd")(pair[0], **DEFAULTS)
    (param,) = loss.parameters()
    assert param.numel() == 1 and param.item() == 1.0
    assert loss.temperature(0).item() == pytest.approx(1 + 20 / (1 + math.exp(-1)), rel=1e-6)


@pytest.mark.parametrize("epoch", [0, 1, 4, 9, 10, 100])
def test_curriculum_is_the_authors_cosine_decay_over_one_based_epochs(pair, epoch):
    loss = LOSSES.get("ctkd")(pair[0], **DEFAULTS)
    assert loss.reversal(epoch) == pytest.approx(authors_cosine_decay(epoch + 1), abs=1e-12)


def test_value_is_kd_at_the_learned_temperature(pair):
    ctx, s, t, b = pair
    loss = LOSSES.get("ctkd")(ctx, **DEFAULTS)
    T = 1 + 20 / (1 + math.exp(-1))
    z_s, z_t = s.logits.detach().double().numpy() / T, t.logits.double().numpy() / T
    p_s = np.exp(z_s) / np.exp(z_s).sum(1, keepdims=True)
    p_t = np.exp(z_t) / np.exp(z_t).sum(1, keepdims=True)
    assert loss(s, t, b).item() == pytest.approx(T * T * np.sum(p_t * np.log(p_t / p_s), 1).mean(), rel=1e-5)


@pytest.mark.parametrize("epoch", [0, 3, 20])
def test_the_temperature_gradient_is_reversed_and_scaled(pair, epoch):
    ctx, s, t, b = pair
    b.epoch = epoch
    loss = LOSSES.get("ctkd")(ctx, **DEFAULTS)
    loss(s, t, b).backward()
    w = torch.ones((), dtype=torch.float64, requires_grad=True)  # the plain, unreversed gradient of the same KD
    T = 1 + 20 * torch.sigmoid(w)
    z_s, z_t = s.logits.detach().double(), t.logits.double()
    kd = F.kl_div(F.log_softmax(z_s / T, 1), F.softmax(z_t / T, 1), reduction="batchmean") * T * T
    (plain,) = torch.autograd.grad(kd, w)
    # fp32 loss math: the temperature's gradient cancels to a few digits, the sign and scale are pinned
    assert loss.global_t.grad.item() == pytest.approx(authors_cosine_decay(epoch + 1) * plain.item(), rel=1e-2)
    assert s.logits.grad is not None and s.logits.grad.abs().sum() > 0  # the student's gradient is not reversed
