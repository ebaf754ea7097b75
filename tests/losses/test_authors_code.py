"""The classic losses against the facts the authors' code fixes (HobbitLong/RepDistiller).

Each trainable part's layer list is written here as the authors define it; the named variants
of cc, ft, ab and crd are compared with values computed here from the authors' formulas. Only
learned weights are taken from the module under test.
"""

import inspect
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from losses import LOSSES, Batch, ModelShapes, Need, Outputs, Preparation
from registry import ConfigError

STUDENT = ModelShapes(features=((3, 8, 8), (6, 8, 8), (5, 4, 4)), embedding=5, num_classes=4)
TEACHER = ModelShapes(features=((4, 16, 16), (6, 8, 8), (7, 2, 2)), embedding=7, num_classes=4)
ZOO_CRD = dict(embed_dim=6, temperature=0.07, momentum=0.5)


def layers(module: nn.Module) -> list[type]:
    """The leaf layers of a module, in order."""
    return [type(m) for m in module.modules() if not list(m.children())]


def np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def features(shapes: ModelShapes, batch: int, seed: int) -> Outputs:
    g = torch.Generator().manual_seed(seed)
    return Outputs(logits=torch.randn(batch, shapes.num_classes, generator=g),
                   features=tuple(torch.randn(batch, *s, generator=g) for s in shapes.features),
                   embedding=torch.randn(batch, shapes.embedding, generator=g))


def step(indices, labels=None) -> Batch:
    labels = torch.zeros(len(indices), dtype=torch.long) if labels is None else labels
    return Batch(labels, torch.as_tensor(indices), 0, torch.Generator().manual_seed(0))


# --- architecture of every trainable part, as the authors define it ---------------------------

@pytest.mark.parametrize("s_shape, t_shape, conv, kernel, stride, padding", [
    ((3, 8, 8), (4, 4, 4), nn.Conv2d, (3, 3), (2, 2), (1, 1)),  # ConvReg: s_H == 2 t_H
    ((3, 4, 4), (4, 8, 8), nn.ConvTranspose2d, (4, 4), (2, 2), (1, 1)),  # s_H * 2 == t_H
    ((3, 6, 6), (4, 4, 4), nn.Conv2d, (3, 3), (1, 1), (0, 0)),  # kernel 1 + s_H - t_H, no padding
    ((3, 4, 4), (4, 4, 4), nn.Conv2d, (1, 1), (1, 1), (0, 0)),
])
def test_fitnet_regressor_is_convreg(context, s_shape, t_shape, conv, kernel, stride, padding):
    shapes = lambda f: ModelShapes(features=(f, f), embedding=2, num_classes=2)
    loss = LOSSES.get("fitnet")(context(shapes(s_shape), shapes(t_shape)), stage=-1)
    assert layers(loss.regressor) == [conv, nn.BatchNorm2d, nn.ReLU]  # RepDistiller ConvReg(use_relu=True)
    c = loss.regressor[0]
    assert (c.kernel_size, c.stride, c.padding, c.bias is not None) == (kernel, stride, padding, True)
    out = loss.regressor(torch.randn(2, *s_shape))
    assert out.shape[1:] == t_shape and out.min() >= 0


def test_fitnet_regressor_beyond_convreg(context):
    """ConvReg refuses a student smaller by other than half: the unpadded transposed mirror; mixed sizes fail."""
    shapes = lambda f: ModelShapes(features=(f,), embedding=2, num_classes=2)
    loss = LOSSES.get("fitnet")(context(shapes((3, 3, 3)), shapes((4, 8, 8))), stage=-1)
    assert layers(loss.regressor) == [nn.ConvTranspose2d, nn.BatchNorm2d, nn.ReLU]
    assert loss.regressor(torch.randn(2, 3, 3, 3)).shape == (2, 4, 8, 8)
    with pytest.raises(ConfigError, match="taller"):
        LOSSES.get("fitnet")(context(shapes((3, 3, 8)), shapes((4, 8, 3))), stage=-1)


def test_ft_translator_and_paraphraser_are_the_authors(context):
    loss = LOSSES.get("ft")(context(STUDENT, TEACHER), stage=-1, rate=0.5, init_epochs=0, init_lr=0.01,
                            variant="repdistiller")
    # Translator(use_bn=True) as train_student.py builds it; Paraphraser(use_bn=False)
    assert layers(loss.translator) == [nn.Conv2d, nn.BatchNorm2d, nn.LeakyReLU] * 3
    assert layers(loss.paraphraser.encoder) == [nn.Conv2d, nn.LeakyReLU] * 3
    assert layers(loss.paraphraser.decoder) == [nn.ConvTranspose2d, nn.LeakyReLU] * 3
    convs = lambda m: [(c.in_channels, c.out_channels) for c in m.modules()
                       if isinstance(c, (nn.Conv2d, nn.ConvTranspose2d))]
    assert convs(loss.translator) == [(5, 5), (5, 3), (3, 3)]  # in, in -> int(7 * 0.5), out
    assert convs(loss.paraphraser.encoder) == [(7, 7), (7, 3), (3, 3)]
    assert convs(loss.paraphraser.decoder) == [(3, 3), (3, 7), (7, 7)]
    assert all(m.negative_slope == 0.1 for m in loss.modules() if isinstance(m, nn.LeakyReLU))


def test_ab_connector_is_none_for_equal_shapes_else_conv_bn(context):
    loss = LOSSES.get("ab")(context(STUDENT, TEACHER), stages=[-2, -1], margin=1.0, init_epochs=0)
    equal, other = loss.connectors  # (6, 8, 8) -> (6, 8, 8); (5, 4, 4) -> (7, 2, 2)
    assert layers(equal) == [nn.Identity]
    assert layers(other) == [nn.Conv2d, nn.BatchNorm2d]  # ConvReg(use_relu=False)
    assert other[0].stride == (2, 2)


def test_vid_head_is_the_authors(context):
    loss = LOSSES.get("vid")(context(STUDENT, TEACHER), stages=[-1], init_variance=5.0, variance_eps=1e-5)
    head = loss.heads[0].mean
    assert layers(head) == [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.ReLU, nn.Conv2d]
    assert [(c.in_channels, c.out_channels, c.bias) for c in head if isinstance(c, nn.Conv2d)] == [
        (5, 7, None), (7, 7, None), (7, 7, None)]  # mid width = teacher channels, no bias


def test_crd_and_cc_heads_are_linear(context):
    crd = LOSSES.get("crd")(context(STUDENT, TEACHER), negatives=4, eps=1e-7, memory_init="uniform",
                            negatives_from="other_classes", **ZOO_CRD)
    assert layers(crd.embed_s) == [nn.Linear] and crd.embed_s.linear.out_features == 6
    cc = LOSSES.get("cc")(context(STUDENT, TEACHER), variant="repdistiller", embed_dim=128, gamma=0.4, order=2)
    assert layers(cc.embed_s) == layers(cc.embed_t) == [nn.Linear]  # LinearEmbed: no normalisation
    assert (cc.embed_s.in_features, cc.embed_t.in_features, cc.embed_s.out_features) == (5, 7, 128)
    assert not list(LOSSES.get("cc")(context(STUDENT, TEACHER), variant="paper", embed_dim=128, gamma=0.4,
                                      order=2).parameters())


# --- the variants against the authors' formulas -------------------------------------------------

def test_cc_repdistiller_is_the_correlation_proxy(context):
    loss = LOSSES.get("cc")(context(STUDENT, TEACHER), variant="repdistiller", embed_dim=6, gamma=0.4, order=2)
    s, t = features(STUDENT, 5, 1), features(TEACHER, 5, 2)
    linear = lambda head, x: x @ np64(head.weight).T + np64(head.bias)
    delta = np.abs(linear(loss.embed_s, np64(s.embedding)) - linear(loss.embed_t, np64(t.embedding)))
    expected = np.mean(np.sum(delta[:-1] * delta[1:], axis=1))  # distiller_zoo/CC.py Correlation
    assert loss(s, t, step(range(5))).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("variant", ["repdistiller", "paper"])
def test_ft_factor_variants(context, variant):
    loss = LOSSES.get("ft")(context(STUDENT, TEACHER), stage=-1, rate=0.5, init_epochs=0, init_lr=0.01,
                            variant=variant)
    s, t = features(STUDENT, 3, 1), features(TEACHER, 3, 2)
    f_s = np64(loss.translator(s.features[-1]))  # [3, 3, 4, 4]
    f_t = np64(loss.paraphraser.encoder(t.features[-1]))  # [3, 3, 2, 2]
    f_s = f_s.reshape(3, 3, 2, 2, 2, 2).mean(axis=(3, 5))  # pooled to the teacher's 2 x 2
    if variant == "repdistiller":  # distiller_zoo/FT.py: normalize(f.pow(2).mean(1).view(B, -1)), p2 = 1
        factor = lambda f: unit_rows((f**2).mean(axis=1).reshape(3, -1))
    else:  # the paper's Eq. 3: the whole factor as one vector
        factor = lambda f: unit_rows(f.reshape(3, -1))
    expected = np.abs(factor(f_s) - factor(f_t)).mean()
    assert loss(s, t, step(range(3))).item() == pytest.approx(expected, rel=1e-5)


def test_ab_without_connector_compares_the_raw_student_stage(context):
    loss = LOSSES.get("ab")(context(STUDENT, TEACHER), stages=[-2], margin=1.0, init_epochs=0)
    s, t = features(STUDENT, 4, 1), features(TEACHER, 4, 2)
    src, tgt = np64(s.features[1]), np64(t.features[1])
    per_neuron = (src + 1) ** 2 * ((src > -1) & (tgt <= 0)) + (src - 1) ** 2 * ((src <= 1) & (tgt > 0))
    expected = per_neuron.sum() / 4 / 1000 * 3  # distiller_zoo/AB.py, one stage of weight 1
    assert loss.transfer_loss(s.features, t.features).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("preact", [True, False])
def test_ab_trains_on_pre_activation_stages_where_the_model_offers_them(context, preact):
    """RepDistiller's ``abound``: ``model(x, is_feat=True, preact=True)``, then ``feat[1:-1]``; a model without
    pre-activation taps keeps its post-activation stages."""
    offer = lambda m: replace(m, preact_features=m.features[1:] if preact else ())
    loss = LOSSES.get("ab")(context(offer(STUDENT), offer(TEACHER)), stages=[-2, -1], margin=1.0, init_epochs=1)
    stages = {"post": features(STUDENT, 2, 1).features, "pre": features(STUDENT, 2, 2).features[1:]}
    asked, seen = [], []

    def extract(model, images, needs):
        asked.append(needs)
        return Outputs(features=stages["post"], preact_features=stages["pre"] if Need.PREACT_FEATURES in needs else ())

    loss.transfer_loss = lambda s, t: seen.append((s, t)) or torch.zeros((), requires_grad=True)
    loss.prepare(Preparation(teacher=nn.Identity(), student=nn.Linear(1, 1), in_order=None, extract=extract,
                             batches=lambda: [(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long), torch.arange(2))],
                             device=torch.device("cpu"), generator=torch.Generator(), cache_dir=None,
                             params={"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0}))
    expected = (stages["post"][0], *stages["pre"]) if preact else stages["post"]
    assert all(Need.PREACT_FEATURES in needs for needs in asked) == preact
    for side in seen[0]:
        assert len(side) == 3 and all(a is b for a, b in zip(side, expected))


def prepared_crd(context, labels: list[int], read: int | None = None, **params):
    """CRD after ``prepare`` over one pass that reads the first ``read`` examples (default all)."""
    loss = LOSSES.get("crd")(context(STUDENT, TEACHER, len(labels)), **{**ZOO_CRD, **params})
    order = torch.arange(len(labels) if read is None else read)
    prep = Preparation(teacher=nn.Identity(), student=nn.Identity(), device=torch.device("cpu"),
                       batches=lambda: [(torch.zeros(len(labels), 1), torch.tensor(labels)[order], order)], in_order=None,
                       extract=None, generator=torch.Generator(), cache_dir=None)
    loss.prepare(prep)
    return loss


LABELS = [0, 1, 2, 0, 1, 2, 0, 1, 2, 3]


@pytest.mark.parametrize("eps", [1e-7, 0.0])
def test_crd_value_is_repdistillers_contrast_loss(context, eps):
    """With one example per class and K = N - 1 every other example is a negative: no sampling."""
    torch.manual_seed(0)
    loss = prepared_crd(context, list(range(10)), negatives=9, eps=eps, memory_init="uniform",
                        negatives_from="other_classes")
    memory_s, memory_t = np64(loss.memory_s), np64(loss.memory_t)
    s, t = features(STUDENT, 1, 1), features(TEACHER, 1, 2)
    anchor, n, k, tau = 9, 10, 9, 0.07

    def side(head, x, memory):  # crd/memory.py scores and Z, crd/criterion.py ContrastLoss
        v = unit_rows(x @ np64(head.linear.weight).T + np64(head.linear.bias))
        out = np.exp(v @ memory.T / tau)[0]  # positive first, then the K negatives (order irrelevant)
        out = out / (out.mean() * n)
        m_pn = k / n
        pos, neg = out[anchor], np.delete(out, anchor)
        return -(np.log(pos / (pos + m_pn + eps)) + np.sum(np.log(m_pn / (neg + m_pn + eps))))

    terms = loss(s, t, step([anchor], torch.tensor([3])))
    assert terms["student_anchor"].item() == pytest.approx(side(loss.embed_s, np64(s.embedding), memory_t), rel=1e-5)
    assert terms["teacher_anchor"].item() == pytest.approx(side(loss.embed_t, np64(t.embedding), memory_s), rel=1e-5)


def test_crd_eps_is_repdistillers_on_sampled_negatives(context, monkeypatch):
    """A large N / K makes K / N small next to eps, so the reference without eps is visibly different."""
    import losses.crd

    drawn = []
    sample = losses.crd.sample_negatives
    monkeypatch.setattr(losses.crd, "sample_negatives", lambda *a: drawn.append(sample(*a)) or drawn[-1])
    labels = [i % 10 for i in range(2000)]
    torch.manual_seed(0)
    loss = prepared_crd(context, labels, negatives=4, eps=1e-7, memory_init="uniform", negatives_from="other_classes")
    s, t = features(STUDENT, 3, 1), features(TEACHER, 3, 2)
    anchors = torch.tensor([3, 500, 1999])
    memory_t = np64(loss.memory_t)
    terms = loss(s, t, step(anchors, torch.tensor(labels)[anchors]))
    idx = np.concatenate([anchors.numpy()[:, None], drawn[0].numpy()], axis=1)  # [B, K + 1], positive first

    def contrast_loss(eps):  # crd/memory.py (Z from the first batch) and crd/criterion.py ContrastLoss
        v = unit_rows(np64(s.embedding) @ np64(loss.embed_s.linear.weight).T + np64(loss.embed_s.linear.bias))
        out = np.exp(np.einsum("bkd,bd->bk", memory_t[idx], v) / 0.07)
        out = out / (out.mean() * 2000)
        m_pn = 4 / 2000
        log_d1 = np.log(out[:, 0] / (out[:, 0] + m_pn + eps))
        log_d0 = np.log(m_pn / (out[:, 1:] + m_pn + eps))
        return -(log_d1.sum() + log_d0.sum()) / 3

    assert terms["student_anchor"].item() == pytest.approx(contrast_loss(1e-7), rel=2e-6)
    assert contrast_loss(0.0) != pytest.approx(contrast_loss(1e-7), rel=2e-5)


@pytest.mark.parametrize("memory_init, unit", [("uniform", False), ("normalised", True)])
def test_crd_memory_init(context, memory_init, unit):
    loss = LOSSES.get("crd")(context(STUDENT, TEACHER, 500), negatives=4, eps=1e-7, memory_init=memory_init,
                             negatives_from="other_examples", **ZOO_CRD)
    bound = math.sqrt(3 / 6)  # crd/memory.py: stdv = 1 / sqrt(d / 3)
    norms = loss.memory_s.norm(dim=1)
    assert torch.allclose(norms, torch.ones(500)) == unit
    if not unit:
        assert loss.memory_s.abs().max() <= bound and loss.memory_s.abs().max() > 0.9 * bound


def test_crd_negatives_exclude_the_anchors_class(context):
    labels = [i % 4 for i in range(40)]
    loss = prepared_crd(context, labels, negatives=20, eps=1e-7, memory_init="uniform", negatives_from="other_classes")
    captured = {}
    original = loss._allowed
    loss._allowed = lambda index: captured.setdefault("allowed", original(index))
    anchors = torch.tensor([0, 5, 10, 39])
    loss(features(STUDENT, 4, 1), features(TEACHER, 4, 2), step(anchors, torch.tensor(labels)[anchors]))
    allowed = captured["allowed"]
    for row, anchor in enumerate(anchors.tolist()):
        assert {j for j in range(40) if allowed[row, j]} == {j for j in range(40) if labels[j] != labels[anchor]}
    assert loss.pool == 30


def test_crd_reads_labels_a_preparation_pass_dropped_from_training_batches(context):
    loss = prepared_crd(context, LABELS, read=8, negatives=4, eps=1e-7, memory_init="uniform",
                        negatives_from="other_classes")
    assert loss.train_labels.tolist() == LABELS[:8] + [-1, -1]
    assert loss.pool == 10 - 3 - 2  # the two unread might both join the largest class
    loss(features(STUDENT, 2, 1), features(TEACHER, 2, 2), step([8, 9], torch.tensor(LABELS[8:])))
    assert loss.train_labels.tolist() == LABELS


def test_crd_before_prepare_draws_over_every_other_example(context):
    loss = LOSSES.get("crd")(context(STUDENT, TEACHER, 10), negatives=4, eps=1e-7, memory_init="uniform",
                             negatives_from="other_classes", **ZOO_CRD)
    loss(features(STUDENT, 2, 1), features(TEACHER, 2, 2), step([0, 1], torch.tensor([0, 0])))
    assert loss.pool == 9 and (loss.train_labels == -1).all()


def test_crd_pool_survives_a_checkpoint(context):
    first = prepared_crd(context, LABELS, negatives=4, eps=1e-7, memory_init="uniform", negatives_from="other_classes")
    second = LOSSES.get("crd")(context(STUDENT, TEACHER, len(LABELS)), negatives=4, eps=1e-7, memory_init="uniform",
                               negatives_from="other_classes", **ZOO_CRD)
    second.load_state_dict(first.state_dict())
    assert second.pool == first.pool == 7 and torch.equal(second.train_labels, first.train_labels)


# --- every built-in loss names its reference and its deviations ---------------------------------

BUILT_IN = [e.name for e in LOSSES if e.provider == "distillbench"]  # plugins document themselves


@pytest.mark.parametrize("name", BUILT_IN)
def test_docstring_ends_with_reference_and_deviations(name):
    last = inspect.getdoc(LOSSES.get(name)).split("\n\n")[-1]  # the closing paragraph
    reference, _, deviations = last.partition("\nDeviations:")
    assert reference.startswith("Reference implementation:"), "the closing paragraph names the reference"
    assert len(reference) > len("Reference implementation:") + 3, "name the repository and file"
    assert deviations.strip(), "a 'Deviations:' line follows: each difference, or none"
