"""CTKD: the learnable temperature, its curriculum and its reversed gradient, pinned to the authors' code, and
the logit losses the authors run at it (DKD; KD on z-scored logits)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from losses import LOSSES, ModelShapes

SHAPES = ModelShapes(features=((3, 4, 4),), embedding=5, num_classes=6)
DEFAULTS = dict(t_start=1.0, t_end=20.0, lambda_max=1.0, curriculum_epochs=10)
PARAMS = {"ctkd": DEFAULTS, "ctkd-ls": DEFAULTS, "dkd-ctkd": dict(DEFAULTS, alpha=1.0, beta=2.0)}
T_INIT = 1 + 20 / (1 + math.exp(-1))


def authors_cosine_decay(i: int, max_value=0.0, min_value=-1.0, num_loops=10) -> float:
    """train_student.py CosineDecay.get_value, as the CIFAR script configures it."""
    i = min(max(i, 0), num_loops)
    return (math.cos(i * math.pi / num_loops) + 1.0) * 0.5 * (max_value - min_value) + min_value


@pytest.fixture
def pair(context, outputs, batch):
    return (context(SHAPES, SHAPES, 12), outputs(SHAPES, 6, seed=1, grad=True), outputs(SHAPES, 6, seed=2),
            batch(6, num_classes=6, num_train=12))


@pytest.mark.parametrize("name", PARAMS)
def test_one_scalar_temperature_parameter_initialised_to_one(pair, name):
    """Global_T: nn.Parameter(torch.ones(1)); the temperature starts at 1 + 20 * sigmoid(1)."""
    loss = LOSSES.get(name)(pair[0], **PARAMS[name])
    (param,) = loss.parameters()
    assert param.numel() == 1 and param.item() == 1.0
    assert loss.temperature(0).item() == pytest.approx(T_INIT, rel=1e-6)


@pytest.mark.parametrize("name", PARAMS)
@pytest.mark.parametrize("epoch", [0, 1, 4, 9, 10, 100])
def test_curriculum_is_the_authors_cosine_decay_over_one_based_epochs(pair, name, epoch):
    loss = LOSSES.get(name)(pair[0], **PARAMS[name])
    assert loss.reversal(epoch) == pytest.approx(authors_cosine_decay(epoch + 1), abs=1e-12)


def test_value_is_kd_at_the_learned_temperature(pair):
    ctx, s, t, b = pair
    loss = LOSSES.get("ctkd")(ctx, **DEFAULTS)
    T = T_INIT
    z_s, z_t = s.logits.detach().double().numpy() / T, t.logits.double().numpy() / T
    p_s = np.exp(z_s) / np.exp(z_s).sum(1, keepdims=True)
    p_t = np.exp(z_t) / np.exp(z_t).sum(1, keepdims=True)
    assert loss(s, t, b).item() == pytest.approx(T * T * np.sum(p_t * np.log(p_t / p_s), 1).mean(), rel=1e-5)


def authors_normalize(z: torch.Tensor) -> torch.Tensor:
    """logit-standardization-KD CTKD/distiller_zoo/KD.py normalize: unbiased std, no epsilon."""
    return (z - z.mean(dim=-1, keepdim=True)) / z.std(dim=-1, keepdim=True)


def authors_dkd(z_s, z_t, target, alpha, beta, T):
    """zhengli97/CTKD distiller_zoo/DKD.py DKDloss: probabilities of target vs the rest, then the rest with
    the target logit pushed down by 1000; KL sums over the batch divided by its size, times T^2."""
    gt = F.one_hot(target, z_s.shape[1]).bool()

    def cat(p):
        return torch.stack([(p * gt).sum(1), (p * ~gt).sum(1)], dim=1)

    p_s, p_t = cat(F.softmax(z_s / T, 1)), cat(F.softmax(z_t / T, 1))
    tckd = F.kl_div(torch.log(p_s), p_t, reduction="sum") * T**2 / target.shape[0]
    nckd = F.kl_div(F.log_softmax(z_s / T - 1000.0 * gt, 1), F.softmax(z_t / T - 1000.0 * gt, 1),
                    reduction="sum") * T**2 / target.shape[0]
    return alpha * tckd + beta * nckd


def plain(name: str, z_s, z_t, target, T):
    """Each registered combination's loss at a given (unreversed) temperature, from the authors' code."""
    if name == "dkd-ctkd":
        return authors_dkd(z_s, z_t, target, 1.0, 2.0, T)
    if name == "ctkd-ls":
        z_s, z_t = authors_normalize(z_s), authors_normalize(z_t)
    return F.kl_div(F.log_softmax(z_s / T, 1), F.softmax(z_t / T, 1), reduction="batchmean") * T * T


@pytest.mark.parametrize("name", ["ctkd-ls", "dkd-ctkd"])
@pytest.mark.parametrize("epoch", [0, 30])
def test_the_combinations_compute_the_authors_loss_at_the_learned_temperature(pair, name, epoch):
    """The same value at every epoch: the curriculum acts on the gradient only, and DKD here has no warm-up."""
    ctx, s, t, b = pair
    b.epoch = epoch
    loss = LOSSES.get(name)(ctx, **PARAMS[name])
    expected = plain(name, s.logits.detach().double(), t.logits.double(), b.labels, T_INIT)
    got = loss(s, t, b)
    got = got if isinstance(got, torch.Tensor) else sum(got.values())
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("name", PARAMS)
@pytest.mark.parametrize("epoch", [0, 3, 20])
def test_the_temperature_gradient_is_reversed_and_scaled(pair, name, epoch):
    ctx, s, t, b = pair
    b.epoch = epoch
    loss = LOSSES.get(name)(ctx, **PARAMS[name])
    value = loss(s, t, b)
    (value if isinstance(value, torch.Tensor) else sum(value.values())).backward()
    def at(w: float) -> float:  # the same loss in float64 at parameter value w
        T = 1 + 20 * torch.sigmoid(torch.tensor(w, dtype=torch.float64))
        return plain(name, s.logits.detach().double(), t.logits.double(), b.labels, T).item()

    unreversed = (at(1 + 1e-5) - at(1 - 1e-5)) / 2e-5  # central difference: the plain, unreversed gradient
    # fp32 loss math: the temperature's gradient cancels to a few digits, the sign and scale are pinned
    assert loss.global_t.grad.item() == pytest.approx(authors_cosine_decay(epoch + 1) * unreversed, rel=1e-2)
    assert s.logits.grad is not None and s.logits.grad.abs().sum() > 0  # the student's gradient is not reversed
