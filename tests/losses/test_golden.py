"""Every loss against an independent float64 computation of its paper's equations.

References are written here from the equations (numpy, explicit loops where that reads clearer);
only a loss's learned parts (connectors, heads, projections) are taken from the module under test.
"""

import math

import numpy as np
import pytest
import torch

from losses import LOSSES, ModelShapes

SMALL_S = ModelShapes(features=((3, 8, 8), (6, 4, 4)), embedding=5, num_classes=6)
SMALL_T = ModelShapes(features=((2, 8, 8), (5, 16, 16), (7, 4, 4)), embedding=4, num_classes=6)


def np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def pool_to(x: np.ndarray, size: int) -> np.ndarray:
    """Average-pool square NCHW maps by an integer factor (what adaptive pooling does then)."""
    b, c, h, w = x.shape
    f = h // size
    return x.reshape(b, c, size, f, size, f).mean(axis=(3, 5))


def align(s: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = min(s.shape[-1], t.shape[-1])
    return pool_to(s, size), pool_to(t, size)


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def value(terms) -> float:
    return (sum(terms.values()) if isinstance(terms, dict) else terms).item()


@pytest.fixture
def pair(context, outputs, batch):
    """(ctx, student outputs, teacher outputs, batch) for the small cross-architecture pair."""
    student, teacher = outputs(SMALL_S, 5, seed=1), outputs(SMALL_T, 5, seed=2)
    return context(SMALL_S, SMALL_T, 9), student, teacher, batch(5, num_classes=6, num_train=9)


def test_at(pair):
    ctx, s, t, b = pair
    loss = LOSSES.get("at")(ctx, stages=[-2, -1], p=2.0)

    def attention(f):  # Q = vec(sum_c |A_c|^p) / ||.||  (the channel mean differs by a constant)
        return unit_rows((np.abs(f) ** 2).sum(axis=1).reshape(f.shape[0], -1))

    expected = 0.0
    for i, j in ((0, 1), (1, 2)):
        fs, ft = align(np64(s.features[i]), np64(t.features[j]))
        expected += ((attention(fs) - attention(ft)) ** 2).mean()
    assert value(loss(s, t, b)) == pytest.approx(expected, rel=1e-5)


def test_sp(pair):
    ctx, s, t, b = pair
    loss = LOSSES.get("sp")(ctx, stages=[-1])
    a_s, a_t = np64(s.features[1]).reshape(5, -1), np64(t.features[2]).reshape(5, -1)
    g_s, g_t = unit_rows(a_s @ a_s.T), unit_rows(a_t @ a_t.T)
    expected = np.sum((g_t - g_s) ** 2) / 5**2
    assert value(loss(s, t, b)) == pytest.approx(expected, rel=1e-5)


def test_nst(pair):
    ctx, s, t, b = pair
    loss = LOSSES.get("nst")(ctx, stages=[-2, -1])
    expected = 0.0
    for i, j in ((0, 1), (1, 2)):
        fs, ft = align(np64(s.features[i]), np64(t.features[j]))
        mmd = 0.0
        for n in range(5):
            xs = unit_rows(fs[n].reshape(fs.shape[1], -1))
            xt = unit_rows(ft[n].reshape(ft.shape[1], -1))
            k = lambda a, c: np.mean((a @ c.T) ** 2)  # polynomial kernel, d=2, c=0
            mmd += k(xt, xt) + k(xs, xs) - 2 * k(xs, xt)
        expected += mmd / 5
    assert value(loss(s, t, b)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("order", [2, 25])
def test_cc(pair, order):
    ctx, s, t, b = pair
    gamma = 0.4
    loss = LOSSES.get("cc")(ctx, variant="paper", embed_dim=8, gamma=gamma, order=order)

    def correlation(e):
        x = unit_rows(e)
        if order == 2:  # the paper's second-order Taylor expansion of the Gaussian RBF
            c = x @ x.T
            return math.exp(-2 * gamma) * (1 + 2 * gamma * c + (2 * gamma * c) ** 2 / 2)
        sq = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)  # a long expansion is the RBF itself
        return np.exp(-gamma * sq)

    c_s, c_t = correlation(np64(s.embedding)), correlation(np64(t.embedding))
    expected = np.sum((c_t - c_s) ** 2) / 5**2
    assert value(loss(s, t, b)) == pytest.approx(expected, rel=1e-4)


def test_vid(pair):
    ctx, s, t, b = pair
    loss = LOSSES.get("vid")(ctx, stages=[-2, -1], init_variance=5.0, variance_eps=1e-5)
    expected = 0.0
    for head, (i, j) in zip(loss.heads, ((0, 1), (1, 2))):
        fs, ft = align(np64(s.features[i]), np64(t.features[j]))
        mu = np64(head.mean(torch.from_numpy(fs).float()))
        var = np.log1p(np.exp(np64(head.alpha))) + 1e-5
        assert var == pytest.approx(5.0)  # the initial predicted variance
        var = var.reshape(1, -1, 1, 1)
        expected += np.mean(0.5 * ((mu - ft) ** 2 / var + np.log(var)))
    assert value(loss(s, t, b)) == pytest.approx(expected, rel=1e-5)


def test_rkd(pair):
    ctx, s, t, b = pair
    loss = LOSSES.get("rkd")(ctx, distance_weight=25.0, angle_weight=50.0)

    def huber(x):
        return np.mean(np.where(np.abs(x) < 1, 0.5 * x**2, np.abs(x) - 0.5))

    def distances(e):
        n = len(e)
        d = np.array([[np.linalg.norm(e[i] - e[j]) for j in range(n)] for i in range(n)])
        return d / (d.sum() / (n * (n - 1)))

    def angles(e):
        n = len(e)
        out = np.zeros((n, n, n))
        for i in range(n):
            for j in range(n):
                for k in range(n):
                    u, v = e[j] - e[i], e[k] - e[i]
                    if j != i and k != i:  # a degenerate triangle contributes 0
                        out[i, j, k] = u @ v / (np.linalg.norm(u) * np.linalg.norm(v))
        return out

    e_s, e_t = np64(s.embedding), np64(t.embedding)
    terms = loss(s, t, b)
    assert terms["distance"].item() == pytest.approx(25 * huber(distances(e_s) - distances(e_t)), rel=1e-4)
    assert terms["angle"].item() == pytest.approx(50 * huber(angles(e_s) - angles(e_t)), rel=1e-4)


def test_pkt(pair):
    ctx, s, t, b = pair
    loss = LOSSES.get("pkt")(ctx)

    def conditional(e):
        x = unit_rows(e)
        k = (x @ x.T + 1) / 2
        return k / k.sum(axis=1, keepdims=True)

    p_s, p_t = conditional(np64(s.embedding)), conditional(np64(t.embedding))
    expected = np.mean(p_t * np.log(p_t / p_s))
    assert value(loss(s, t, b)) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("epoch", [0, 9, 30])
def test_dkd(pair, epoch):
    ctx, s, t, b = pair
    b.epoch, b.epochs = epoch, 240
    alpha, beta, T, warmup = 1.0, 8.0, 4.0, 20  # mdistiller's warm-up: 20 of 240 epochs
    terms = LOSSES.get("dkd")(ctx, alpha=alpha, beta=beta, T=T, warmup=warmup / 240)(s, t, b)
    z_s, z_t, labels = np64(s.logits) / T, np64(t.logits) / T, b.labels.numpy()
    tckd = nckd = 0.0
    for n, y in enumerate(labels):
        p_s, p_t = softmax(z_s[n : n + 1])[0], softmax(z_t[n : n + 1])[0]
        b_s, b_t = np.array([p_s[y], 1 - p_s[y]]), np.array([p_t[y], 1 - p_t[y]])
        tckd += np.sum(b_t * np.log(b_t / b_s))
        q_s, q_t = np.delete(p_s, y), np.delete(p_t, y)
        q_s, q_t = q_s / q_s.sum(), q_t / q_t.sum()
        nckd += np.sum(q_t * np.log(q_t / q_s))
    ramp = min((epoch + 1) / warmup, 1.0)  # mdistiller counts epochs from 1
    scale = ramp * T**2 / len(labels)
    assert terms["tckd"].item() == pytest.approx(alpha * scale * tckd, rel=1e-4)
    assert terms["nckd"].item() == pytest.approx(beta * scale * nckd, rel=1e-4)


def test_dist(pair):
    ctx, s, t, b = pair
    tau = 2.0
    terms = LOSSES.get("dist")(ctx, beta=1.5, gamma=0.5, tau=tau)(s, t, b)
    y_s, y_t = softmax(np64(s.logits) / tau), softmax(np64(t.logits) / tau)
    inter = 1 - np.mean([np.corrcoef(y_s[i], y_t[i])[0, 1] for i in range(len(y_s))])
    intra = 1 - np.mean([np.corrcoef(y_s[:, j], y_t[:, j])[0, 1] for j in range(y_s.shape[1])])
    assert terms["inter"].item() == pytest.approx(1.5 * tau**2 * inter, rel=1e-4)
    assert terms["intra"].item() == pytest.approx(0.5 * tau**2 * intra, rel=1e-4)


def test_crd(pair):
    """The exact NCE (eps 0); with K = N - 1 every other example is a negative, so the value does not depend on sampling."""
    ctx, s, t, b = pair
    tau, num_train = 0.07, ctx.num_train
    loss = LOSSES.get("crd")(ctx, embed_dim=6, negatives=num_train - 1, temperature=tau, momentum=0.5, eps=0.0,
                             memory_init="normalised", negatives_from="other_examples")
    memory_s, memory_t = np64(loss.memory_s), np64(loss.memory_t)

    def embed(head, x):
        v = x @ np64(head.linear.weight).T + np64(head.linear.bias)
        return unit_rows(v)

    def side(anchor, memory):
        scores = anchor @ memory.T / tau  # [B, N]: the positive and all K = N - 1 negatives
        z = num_train * np.exp(scores).mean()  # Z estimated on the first batch
        p = np.exp(scores) / z
        noise = (num_train - 1) / num_train  # K * P_n with P_n = 1 / N
        h = p / (p + noise)
        total = 0.0
        for row, i in enumerate(b.indices.numpy()):
            total += np.log(h[row, i]) + sum(np.log(1 - h[row, j]) for j in range(num_train) if j != i)
        return -total / len(anchor)

    v_s, v_t = embed(loss.embed_s, np64(s.embedding)), embed(loss.embed_t, np64(t.embedding))
    terms = loss(s, t, b)
    assert terms["student_anchor"].item() == pytest.approx(side(v_s, memory_t), rel=1e-4)
    assert terms["teacher_anchor"].item() == pytest.approx(side(v_t, memory_s), rel=1e-4)


def test_ft(pair):
    ctx, s, t, b = pair
    loss = LOSSES.get("ft")(ctx, stage=-1, rate=0.5, init_epochs=0, init_lr=0.01, variant="paper")
    factor_s = np64(loss.translator(s.features[1]))
    factor_t = np64(loss.paraphraser.encoder(t.features[2]))
    assert factor_t.shape[1] == 3  # int(7 * 0.5) channels
    expected = np.mean(np.abs(unit_rows(factor_s.reshape(5, -1)) - unit_rows(factor_t.reshape(5, -1))))
    assert value(loss(s, t, b)) == pytest.approx(expected, rel=1e-5)


def test_ab_initialisation_objective(pair):
    ctx, s, t, b = pair
    margin = 1.0
    loss = LOSSES.get("ab")(ctx, stages=[-2, -1], margin=margin, init_epochs=0)
    expected = 0.0
    for k, (connector, (i, j)) in enumerate(zip(loss.connectors, ((0, 1), (1, 2)))):
        src, tgt = np64(connector(s.features[i])), np64(t.features[j])
        per_neuron = np.where(
            tgt <= 0,
            np.where(src > -margin, (src + margin) ** 2, 0.0),  # inactive in the teacher: push below -margin
            np.where(src <= margin, (src - margin) ** 2, 0.0),  # active: push above +margin
        )
        expected += 2.0 ** (k - 1) * per_neuron.sum()  # weights 1/2, 1 from the last stage back
    expected = expected / 5 * 3 / 1000
    assert loss.transfer_loss(s.features, t.features).item() == pytest.approx(expected, rel=1e-5)


def test_fsp_initialisation_objective(context, outputs):
    shapes_s = ModelShapes(features=((4, 8, 8), (3, 8, 8), (5, 4, 4)), embedding=5, num_classes=6)
    shapes_t = ModelShapes(features=((4, 16, 16), (3, 8, 8), (5, 4, 4)), embedding=5, num_classes=6)
    loss = LOSSES.get("fsp")(context(shapes_s, shapes_t), stages=[0, 1, 2], init_epochs=0)
    s, t = outputs(shapes_s, 3, seed=3), outputs(shapes_t, 3, seed=4)

    def gram(lower, upper):
        lower, upper = align(lower, upper)
        return np.einsum("bihw,bjhw->bij", lower, upper) / (lower.shape[2] * lower.shape[3])

    fs, ft = [np64(f) for f in s.features], [np64(f) for f in t.features]
    expected = sum(np.mean((gram(fs[k], fs[k + 1]) - gram(ft[k], ft[k + 1])) ** 2) for k in range(2))
    assert loss.transfer_loss(s.features, t.features).item() == pytest.approx(expected, rel=1e-5)
