"""Logit standardization, NKD and TTM/WTTM against the authors' equations, written here in float64 numpy."""

import numpy as np
import pytest
import torch

from bench.recipes.resolve import resolve_loss
from losses import LOSSES, ModelShapes
from losses.standardization import standardized, zscore
from registry import ConfigError

SHAPES = ModelShapes(features=((3, 4, 4),), embedding=5, num_classes=7)


def np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def kl_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return np.sum(p * np.log(p / q), axis=1)


def authors_zscore(z: np.ndarray) -> np.ndarray:
    """``normalize`` of logit-standardization-KD: unbiased std, 1e-7 added outside the root."""
    return (z - z.mean(axis=1, keepdims=True)) / (1e-7 + z.std(axis=1, ddof=1, keepdims=True))


@pytest.fixture
def pair(context, outputs, batch):
    student, teacher = outputs(SHAPES, 6, seed=1), outputs(SHAPES, 6, seed=2)
    teacher.logits = 3 * teacher.logits + 1  # a teacher on another scale than its student
    return context(SHAPES, SHAPES, 12), student, teacher, batch(6, num_classes=7, num_train=12)


def value(terms) -> float:
    return (sum(terms.values()) if isinstance(terms, dict) else terms).item()


# -- logit standardization ---------------------------------------------------------------------------
def test_zscore_is_the_authors_unbiased_normalisation():
    z = torch.randn(5, 4, dtype=torch.float64)
    np.testing.assert_allclose(zscore(z).numpy(), authors_zscore(z.numpy()), rtol=1e-12)
    biased = (z - z.mean(1, keepdim=True)) / z.std(1, unbiased=False, keepdim=True)
    assert not torch.allclose(zscore(z), biased, rtol=1e-3)  # 4 classes: Bessel's factor is 15%


def test_zscore_of_a_constant_row_is_zero():
    assert torch.equal(zscore(torch.full((2, 5), 3.0)), torch.zeros(2, 5))


def test_kd_ls_is_kd_on_zscored_logits(pair):
    ctx, s, t, b = pair
    T = 2.0
    got = LOSSES.get("kd-ls")(ctx, T=T)(s, t, b).item()
    p_s, p_t = softmax(authors_zscore(np64(s.logits)) / T), softmax(authors_zscore(np64(t.logits)) / T)
    assert got == pytest.approx(T * T * kl_rows(p_t, p_s).mean(), rel=1e-5)


def test_kd_ls_ignores_each_teachers_logit_scale_and_shift(pair):
    """The paper's point: a teacher's logit range and offset no longer have to be matched."""
    ctx, s, t, b = pair
    rescaled = type(t)(logits=5 * t.logits - 2)
    kd_ls, kd = LOSSES.get("kd-ls")(ctx, T=2.0), LOSSES.get("kd")(ctx, T=2.0)
    assert kd_ls(s, rescaled, b).item() == pytest.approx(kd_ls(s, t, b).item(), rel=1e-5)
    assert kd(s, rescaled, b).item() != pytest.approx(kd(s, t, b).item(), rel=1e-2)


@pytest.mark.parametrize("epoch", [0, 30])
def test_dkd_ls_is_dkd_on_zscored_logits(pair, epoch):
    ctx, s, t, b = pair
    b.epoch, b.epochs = epoch, 240
    alpha, beta, T, warmup = 1.0, 8.0, 2.0, 20  # 20 of 240 epochs
    terms = LOSSES.get("dkd-ls")(ctx, alpha=alpha, beta=beta, T=T, warmup=warmup / 240)(s, t, b)
    p_s, p_t = softmax(authors_zscore(np64(s.logits)) / T), softmax(authors_zscore(np64(t.logits)) / T)
    tckd = nckd = 0.0
    for n, y in enumerate(b.labels.numpy()):
        b_s, b_t = np.array([p_s[n, y], 1 - p_s[n, y]]), np.array([p_t[n, y], 1 - p_t[n, y]])
        tckd += np.sum(b_t * np.log(b_t / b_s))
        q_s, q_t = np.delete(p_s[n], y), np.delete(p_t[n], y)
        q_s, q_t = q_s / q_s.sum(), q_t / q_t.sum()
        nckd += np.sum(q_t * np.log(q_t / q_s))
    scale = min((epoch + 1) / warmup, 1.0) * T * T / len(b.labels)
    assert terms["tckd"].item() == pytest.approx(alpha * scale * tckd, rel=1e-4)
    assert terms["nckd"].item() == pytest.approx(beta * scale * nckd, rel=1e-4)


def test_standardization_refuses_a_loss_without_logits():
    with pytest.raises(TypeError, match="logit loss"):
        standardized(LOSSES.get("at"), "at-ls")


@pytest.mark.parametrize(("name", "weight", "ce_weight", "params"), [
    ("kd-ls", 9.0, 0.1, {"T": 2.0}),  # --base-temp 2 --kd-weight 9; CFG.KD.LOSS.CE_WEIGHT 0.1
    ("dkd-ls", 9.0, 1.0, {"alpha": 1.0, "beta": 8.0, "T": 2.0, "warmup": 20 / 240}),  # alpha, beta times kd-weight
    ("nkd", 1.0, 1.0, {"T": 3.0, "gamma": 3.5}),  # cls_KD cifar100 config
    ("ttm", 45.0, 1.0, {"exponent": 0.1}),  # TTM README: --ttm_l 0.1 -b 45 -r 1
    ("mlkd", 0.9, 0.2, {"temperatures": [4.0, 3.0, 5.0, 2.0, 6.0]}),  # KD_ours.py; CE 0.1 on each of 2 views
    ("mlkd-ls", 9.0, 0.2, {"temperatures": [2.0, 3.0, 5.0, 2.0, 6.0]}),  # base temperature 2 replaces 4
])
def test_recipe_defaults_are_the_authors(name, weight, ce_weight, params):
    spec = resolve_loss(name, {}, {})
    assert (spec.weight, spec.ce_weight, spec.params) == (weight, ce_weight, params)


# -- NKD -----------------------------------------------------------------------------------------------
def test_nkd(pair):
    ctx, s, t, b = pair
    T, gamma = 3.0, 3.5
    terms = LOSSES.get("nkd")(ctx, T=T, gamma=gamma)(s, t, b)
    z_s, z_t = np64(s.logits), np64(t.logits)
    target = non_target = 0.0
    for n, y in enumerate(b.labels.numpy()):
        target -= softmax(z_t[n : n + 1])[0, y] * np.log(softmax(z_s[n : n + 1])[0, y])
        q_s = softmax(np.delete(z_s[n], y)[None] / T)[0]  # the target logit removed, then softmax
        q_t = softmax(np.delete(z_t[n], y)[None] / T)[0]
        non_target -= gamma * T * T * np.sum(q_t * np.log(q_s))
    assert terms["target"].item() == pytest.approx(target / len(b.labels), rel=1e-5)
    assert terms["non_target"].item() == pytest.approx(non_target / len(b.labels), rel=1e-5)


def test_nkd_target_term_is_at_temperature_one(pair):
    ctx, s, t, b = pair
    a, c = LOSSES.get("nkd")(ctx, T=1.0, gamma=1.0)(s, t, b), LOSSES.get("nkd")(ctx, T=4.0, gamma=1.0)(s, t, b)
    assert a["target"].item() == c["target"].item()


# -- TTM / WTTM ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("exponent", [0.1, 0.5, 1.0])
def test_ttm_is_kd_with_a_teacher_only_temperature(pair, exponent):
    """p_t^gamma / Z = softmax(gamma * t): a temperature 1/gamma on the teacher alone."""
    ctx, s, t, b = pair
    got = LOSSES.get("ttm")(ctx, exponent=exponent)(s, t, b).item()
    p_t, p_s = softmax(exponent * np64(t.logits)), softmax(np64(s.logits))
    assert got == pytest.approx(kl_rows(p_t, p_s).mean(), rel=1e-5)


def test_wttm_weights_each_example_by_the_power_sum(pair):
    ctx, s, t, b = pair
    exponent = 0.2
    got = LOSSES.get("wttm")(ctx, exponent=exponent)(s, t, b).item()
    powered = softmax(np64(t.logits)) ** exponent
    z = powered.sum(axis=1)
    assert got == pytest.approx((z * kl_rows(powered / z[:, None], softmax(np64(s.logits)))).mean(), rel=1e-5)


def test_ttm_exponent_must_be_positive(context):
    with pytest.raises(ConfigError, match="exponent must be > 0"):
        LOSSES.get("ttm")(context(SHAPES, SHAPES), exponent=0.0)
