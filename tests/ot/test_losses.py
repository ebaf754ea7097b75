"""The OT loss plugins: built from recipes on a cross-architecture pair, trained through, and
checked against the papers' formulas written here (numpy / POT)."""

import inspect
import tomllib
from pathlib import Path

import numpy as np
import ot
import pytest
import torch
from torch import nn

from losses import LOSSES, Batch, LossContext, ModelShapes, Need, Outputs, Preparation, total
from losses.ot.class_cost import class_similarity, collect_class_samples
from registry import ConfigError

RECIPE = tomllib.loads((Path(__file__).resolve().parents[2] / "bench" / "recipes" / "losses" / "ot.toml").read_text())
OT_LOSSES = sorted(RECIPE)

# Different channels, resolutions, stage counts and embedding widths.
STUDENT = ModelShapes(features=((8, 16, 16), (16, 8, 8), (32, 4, 4)), embedding=32, num_classes=10)
TEACHER = ModelShapes(features=((4, 16, 16), (12, 8, 8), (24, 4, 4), (48, 2, 2)), embedding=48, num_classes=10)
B = 8


def make_outputs(shapes: ModelShapes, needs, *, grad: bool, seed: int) -> Outputs:
    """Only what ``needs`` asks for, as the harness provides it."""
    g = torch.Generator().manual_seed(seed)

    def tensor(*shape):
        return torch.randn(*shape, generator=g).requires_grad_(grad)

    return Outputs(
        logits=tensor(B, shapes.num_classes) if Need.LOGITS in needs else None,
        features=tuple(tensor(B, *s) for s in shapes.features) if Need.FEATURES in needs else (),
        embedding=tensor(B, shapes.embedding) if Need.EMBEDDING in needs else None,
    )


def make_batch(seed: int = 0) -> Batch:
    labels = torch.randint(10, (B,), generator=torch.Generator().manual_seed(seed))
    return Batch(labels, torch.arange(B), 0, torch.Generator().manual_seed(seed + 1))


def tiny_preparation(tmp_path: Path, calls: list | None = None, images: int = 60) -> Preparation:
    """A linear 'teacher' on 12-d inputs with 10 classes, one epoch in batches of 16."""
    g = torch.Generator().manual_seed(0)
    teacher = nn.Linear(12, 10)
    data = torch.randn(images, 12, generator=g)
    labels = torch.arange(images) % 10

    def batches():
        for start in range(0, images, 16):
            yield data[start:start + 16], labels[start:start + 16], torch.arange(start, min(start + 16, images))

    def extract(model, x, needs):
        if calls is not None:
            calls.append(needs)
        return Outputs(logits=model(x) if Need.LOGITS in needs else None, embedding=x if Need.EMBEDDING in needs else None)

    return Preparation(teacher, nn.Linear(12, 10), batches, extract, torch.device("cpu"), g, tmp_path)


def build(name: str, tmp_path: Path, ctx: LossContext | None = None, **overrides):
    loss = LOSSES.get(name)(ctx or LossContext(STUDENT, TEACHER, 100), **{**RECIPE[name].get("params", {}), **overrides})
    loss.prepare(tiny_preparation(tmp_path))
    return loss


# -- every OT loss, from its recipe ----------------------------------------------------------------
@pytest.mark.parametrize("name", OT_LOSSES)
def test_recipe_builds_and_gradients_reach_student_and_own_parameters(name, tmp_path):
    loss = build(name, tmp_path)
    student = make_outputs(STUDENT, loss.needs, grad=True, seed=1)
    teacher = make_outputs(TEACHER, loss.needs, grad=False, seed=2)
    value = total(loss(student, teacher, make_batch()))
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    student_tensors = [t for t in (student.logits, student.embedding, *student.features) if t is not None]
    assert any(t.grad is not None and t.grad.abs().sum() > 0 for t in student_tensors)
    for parameter_name, parameter in loss.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), parameter_name


@pytest.mark.parametrize("name", OT_LOSSES)
def test_recipe_lists_every_hyperparameter(name):
    cls = LOSSES.get(name)
    assert RECIPE[name]["source"] and RECIPE[name]["weight"] > 0
    keyword_only = {n for n, p in inspect.signature(cls.__init__).parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert set(RECIPE[name].get("params", {})) == keyword_only


def same_shapes_context():
    return LossContext(TEACHER, TEACHER, 100)


@pytest.mark.parametrize("name, overrides, tolerance", [
    ("ot-emd", {}, 1e-6),
    ("ot-ipot", {}, 1e-3),  # 50 proximal steps from the independent coupling
    ("ot-sinkdiv", {}, 1e-6),
    ("ot-sliced", {}, 1e-6),
    ("ot-maxsliced", {}, 1e-6),
    ("ot-feature", {"solver": "emd", "solver_options": {"cost": "cosine"}}, 1e-6),
])
def test_identical_student_and_teacher_give_zero(name, overrides, tolerance, tmp_path):
    loss = build(name, tmp_path, same_shapes_context(), **overrides)
    outputs = make_outputs(TEACHER, loss.needs, grad=False, seed=3)
    assert abs(total(loss(outputs, outputs, make_batch())).item()) < tolerance


def test_projection_both_trains_only_the_student_head(tmp_path):
    loss = build("ot-ipot", tmp_path, projection="both", proj_dim=6)
    assert {n for n, _ in loss.named_parameters()} == {"student_head.weight", "student_head.bias"}
    assert loss.teacher_head.weight.shape == (TEACHER.embedding, 6)
    torch.testing.assert_close(loss.teacher_head.weight.T @ loss.teacher_head.weight, torch.eye(6))


@pytest.mark.parametrize("name", ["ot-sliced", "ot-maxsliced"])
def test_sliced_losses_draw_from_the_step_generator(name, tmp_path):
    loss = build(name, tmp_path)
    s, t = make_outputs(STUDENT, loss.needs, grad=False, seed=1), make_outputs(TEACHER, loss.needs, grad=False, seed=2)
    values = [loss(s, t, make_batch(seed)).item() for seed in (0, 0, 5)]
    assert values[0] == values[1] != values[2]


@pytest.mark.parametrize("name, overrides, message", [
    ("ot-ipot", {"projection": "sideways"}, "expected one of: both, student"),
    ("ot-sinkhorn", {"eps": -1.0}, "eps must be > 0"),
    ("ot-feature", {"solver": "hungarian"}, "expected one of: emd, ipot, maxsliced, sinkdiv, sinkhorn, sliced"),
    ("ot-feature", {"solver": "ipot", "solver_options": {"cost": "cosine"}},
     "takes exactly the settings beta, cost, inner_iters, outer_iters"),
    ("ot-feature", {"points": "pixels"}, "expected one of: batch, example"),
    ("wkd-l", {"class_cost": "euclidean"}, "expected one of: cka, prototype"),
    ("wkd-f", {"stage": 7}, "stage 7 does not exist"),
])
def test_bad_options_are_config_errors(name, overrides, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        build(name, tmp_path, **overrides)


def test_feature_points_batch_mode_pools_the_whole_batch(tmp_path):
    loss = build("ot-feature", tmp_path, points="batch")
    s = make_outputs(STUDENT, loss.needs, grad=True, seed=1)
    t = make_outputs(TEACHER, loss.needs, grad=False, seed=2)
    value = loss(s, t, make_batch())
    value.backward()
    assert value.dim() == 0 and s.features[-1].grad is not None


# -- WKD-L: class cost from the teacher, cached ----------------------------------------------------
def test_collect_class_samples_keeps_the_first_examples_of_each_class(tmp_path):
    prep = tiny_preparation(tmp_path)
    samples, counts = collect_class_samples(prep, "embedding", 10, 4)
    data = torch.cat([x for x, _, _ in prep.batches()])
    assert counts.tolist() == [4] * 10
    torch.testing.assert_close(samples[3], data[[3, 13, 23, 33]])


@pytest.mark.parametrize("per_class, dim", [(6, 4), (3, 8)])  # both Gram routes: D <= b and D > b
def test_cka_similarity_is_the_papers_formula(per_class, dim):
    g = torch.Generator().manual_seed(0)
    samples = torch.randn(5, per_class, dim, generator=g, dtype=torch.float64)
    counts = torch.tensor([per_class, per_class, 2, per_class, 1])
    expected = np.zeros((5, 5))
    covariances = []
    for c in range(5):
        X = samples[c, : counts[c]].numpy()
        X = X - X.mean(0)
        covariances.append(X.T @ X)
    for i in range(5):
        for j in range(5):
            Si, Sj = covariances[i], covariances[j]
            expected[i, j] = (Si * Sj).sum() / max(np.linalg.norm(Si) * np.linalg.norm(Sj), 1e-300)
    np.testing.assert_allclose(class_similarity(samples, counts, "cka").numpy(), expected, rtol=1e-10, atol=1e-12)


def test_wkd_l_prepare_builds_the_cost_and_caches_it(tmp_path):
    calls: list = []
    first = build("wkd-l", tmp_path)
    fresh = LOSSES.get("wkd-l")(LossContext(STUDENT, TEACHER, 100), **RECIPE["wkd-l"]["params"])
    fresh.prepare(tiny_preparation(tmp_path, calls))
    assert calls == []  # loaded from the cache: the teacher did not run
    torch.testing.assert_close(first.cost, fresh.cost)
    assert first.cost.shape == (10, 10) and (first.cost.diagonal() == 0).all() and (first.cost >= 0).all()
    assert len(list(tmp_path.glob("class-similarity_cka_logits_10x128.pt"))) == 1

    other = tmp_path / "other"
    LOSSES.get("wkd-l")(LossContext(STUDENT, TEACHER, 100), **RECIPE["wkd-l"]["params"]).prepare(tiny_preparation(other, calls))
    assert calls and all(needs == frozenset({Need.LOGITS}) for needs in calls)


def test_wkd_l_is_target_term_plus_weighted_ot_without_the_target_class(tmp_path):
    params = {**RECIPE["wkd-l"]["params"], "iters": 500, "eps": 0.1}
    loss = build("wkd-l", tmp_path, **params)
    s = make_outputs(STUDENT, loss.needs, grad=False, seed=1)
    t = make_outputs(TEACHER, loss.needs, grad=False, seed=2)
    batch = make_batch()
    terms = loss(s, t, batch)

    def softmax(z):
        e = np.exp(z - z.max())
        return e / e.sum()

    M, T = loss.cost.double().numpy(), params["T"]
    target, wd = 0.0, 0.0
    for zs, zt, y in zip(s.logits.double().numpy(), t.logits.double().numpy(), batch.labels.tolist()):
        target -= softmax(zt)[y] * np.log(softmax(zs)[y]) / B
        rest = [c for c in range(10) if c != y]
        wd += ot.sinkhorn2(softmax(zs[rest] / T), softmax(zt[rest] / T), M[np.ix_(rest, rest)], 0.1, stopThr=1e-12) / B
    assert terms["target"].item() == pytest.approx(target, rel=1e-5)
    assert terms["wasserstein"].item() == pytest.approx(params["wasserstein_weight"] * wd, rel=1e-4)


def test_wkd_f_is_the_diagonal_gaussian_w2_of_each_example(tmp_path):
    loss = build("wkd-f", tmp_path)
    s = make_outputs(STUDENT, loss.needs, grad=False, seed=1)
    t = make_outputs(TEACHER, loss.needs, grad=False, seed=2)
    terms = loss(s, t, make_batch())
    s_map = loss.connector(s.features[-1]).detach().double().flatten(2).numpy()  # learned part from the module
    t_map = t.features[-1].double().flatten(2).numpy()
    reg = RECIPE["wkd-f"]["params"]["reg"]
    mean_part = ((s_map.mean(-1) - t_map.mean(-1)) ** 2).sum(-1).mean()
    std_part = ((np.sqrt(s_map.var(-1) + reg) - np.sqrt(t_map.var(-1) + reg)) ** 2).sum(-1).mean()
    assert terms["mean"].item() == pytest.approx(RECIPE["wkd-f"]["params"]["mean_weight"] * mean_part, rel=1e-5)
    assert terms["covariance"].item() == pytest.approx(std_part, rel=1e-5)


def test_sinkd_is_the_sinkhorn_cost_between_batch_probability_vectors(tmp_path):
    params = {**RECIPE["sinkd"]["params"], "iters": 500}
    loss = build("sinkd", tmp_path, **params)
    s = make_outputs(STUDENT, loss.needs, grad=False, seed=1)
    t = make_outputs(TEACHER, loss.needs, grad=False, seed=2)
    p_s = torch.softmax(s.logits.double() / params["T"], 1).numpy()
    p_t = torch.softmax(t.logits.double() / params["T"], 1).numpy()
    expected = ot.sinkhorn2(np.ones(B) / B, np.ones(B) / B, ot.dist(p_s, p_t, metric="cityblock"), params["eps"], stopThr=1e-12)
    assert loss(s, t, make_batch()).item() == pytest.approx(expected, rel=1e-4)
