"""MLKD and MLKD with logit standardization against the authors' forward pass, written here in numpy."""

import numpy as np
import pytest
import torch

from losses import LOSSES, ModelShapes
from registry import ConfigError

SHAPES = ModelShapes(features=((3, 4, 4),), embedding=5, num_classes=7)
TEMPERATURES = [4.0, 3.0, 5.0, 2.0, 6.0]


def np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def kd(z_s, z_t, T):
    p_s, p_t = softmax(z_s / T), softmax(z_t / T)
    return T * T * np.sum(p_t * np.log(p_t / p_s), axis=1).mean()


def bc(z_s, z_t, T):
    p_s, p_t = softmax(z_s / T), softmax(z_t / T)
    return ((p_t @ p_t.T - p_s @ p_s.T) ** 2).sum() / len(z_s)


def cc(z_s, z_t, T):
    p_s, p_t = softmax(z_s / T), softmax(z_t / T)
    return ((p_t.T @ p_t - p_s.T @ p_s) ** 2).sum() / z_s.shape[1]


def authors_zscore(z):
    return (z - z.mean(axis=1, keepdims=True)) / (1e-7 + z.std(axis=1, ddof=1, keepdims=True))


def reference(z_s, z_t, temperatures, standardize=False, strong_view=None):
    """KD_ours.forward_train: scalar loss * boolean mask, then .mean(); ``loss_kd_strong`` reads the strong
    view's logits ``strong_view = (student, teacher)`` at their temperatures 4, 3, 5 and the weak view's at
    2 and 6 (both views the same when there is no strong view)."""
    p_t = softmax(z_t)
    confidence, class_confidence = p_t.max(axis=1), p_t.sum(axis=0)
    mask = confidence <= np.percentile(confidence, 50)
    class_mask = class_confidence <= np.percentile(class_confidence, 50)
    stand = authors_zscore if standardize else (lambda z: z)
    k_s, k_t = stand(z_s), stand(z_t)
    q_s, q_t = (k_s, k_t) if strong_view is None else (stand(strong_view[0]), stand(strong_view[1]))
    weak = sum((kd(k_s, k_t, T) * mask).mean() for T in temperatures)
    strong = sum(kd(q_s, q_t, T) for T in temperatures[:3]) + sum(kd(k_s, k_t, T) for T in temperatures[3:])
    return {"instance": weak + strong,
            "batch": sum((bc(z_s, z_t, T) * mask).mean() for T in temperatures),
            "class": sum((cc(z_s, z_t, T) * class_mask).mean() for T in temperatures)}


@pytest.fixture
def pair(context, outputs, batch):
    student, teacher = outputs(SHAPES, 7, seed=1), outputs(SHAPES, 7, seed=2)  # odd batch: the median is a sample
    teacher.logits = 2 * teacher.logits
    return context(SHAPES, SHAPES, 14), student, teacher, batch(7, num_classes=7, num_train=14)


@pytest.mark.parametrize(("name", "standardize"), [("mlkd", False), ("mlkd-ls", True)])
def test_mlkd_matches_the_authors_forward(pair, name, standardize):
    ctx, s, t, b = pair
    temperatures = [2.0, 3.0, 5.0, 2.0, 6.0] if standardize else TEMPERATURES
    terms = LOSSES.get(name)(ctx, temperatures=temperatures)(s, t, b)
    expected = reference(np64(s.logits), np64(t.logits), temperatures, standardize)
    for key, value in expected.items():
        assert terms[key].item() == pytest.approx(value, rel=1e-5), key


@pytest.mark.parametrize(("name", "standardize"), [("mlkd", False), ("mlkd-ls", True)])
def test_mlkd_with_a_strong_view_matches_the_authors_two_view_forward(pair, outputs, name, standardize):
    ctx, s, t, b = pair
    s.strong, t.strong = outputs(SHAPES, 7, seed=3), outputs(SHAPES, 7, seed=4)
    temperatures = [2.0, 3.0, 5.0, 2.0, 6.0] if standardize else TEMPERATURES
    terms = LOSSES.get(name)(ctx, temperatures=temperatures)(s, t, b)
    expected = reference(np64(s.logits), np64(t.logits), temperatures, standardize,
                         (np64(s.strong.logits), np64(t.strong.logits)))
    for key, value in expected.items():
        assert terms[key].item() == pytest.approx(value, rel=1e-5), key
    one_view = reference(np64(s.logits), np64(t.logits), temperatures, standardize)
    assert expected["instance"] != pytest.approx(one_view["instance"], rel=1e-3)  # the strong view is read


def test_mlkd_ls_keeps_raw_logits_for_the_batch_and_class_levels(pair):
    ctx, s, t, b = pair
    plain, standardized = (LOSSES.get(n)(ctx, temperatures=TEMPERATURES)(s, t, b) for n in ("mlkd", "mlkd-ls"))
    assert standardized["batch"].item() == plain["batch"].item()
    assert standardized["class"].item() == plain["class"].item()
    assert standardized["instance"].item() != pytest.approx(plain["instance"].item(), rel=1e-3)


def test_mlkd_needs_a_temperature(context):
    with pytest.raises(ConfigError, match="at least one temperature"):
        LOSSES.get("mlkd")(context(SHAPES, SHAPES), temperatures=[])
