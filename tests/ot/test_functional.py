"""``losses.ot.functional`` against POT (float64, CPU), finite differences and edge cases.

POT computes every reference value from the same inputs; where POT has no such solver (IPOT) the
paper's algorithm is written here in numpy.
"""

import numpy as np
import ot
import pytest
import torch

from losses.ot import functional as otf
from registry import ConfigError

COSTS_POT = {"sqeuclidean": "sqeuclidean", "euclidean": "euclidean", "cosine": "cosine"}


def clouds(n=7, m=5, d=3, seed=0, batch=None):
    g = torch.Generator().manual_seed(seed)
    lead = () if batch is None else (batch,)
    x = torch.randn(*lead, n, d, generator=g, dtype=torch.float64)
    y = torch.randn(*lead, m, d, generator=g, dtype=torch.float64) + 0.5
    a = torch.rand(*lead, n, generator=g, dtype=torch.float64) + 0.2
    b = torch.rand(*lead, m, generator=g, dtype=torch.float64) + 0.2
    return x, y, a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)


def np_(*tensors):
    return [t.detach().numpy() for t in tensors]


def unit_projections(L, d, seed=1):
    return torch.randn(L, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# -- values against POT ----------------------------------------------------------------------------
@pytest.mark.parametrize("cost", sorted(COSTS_POT))
def test_emd_matches_pot(cost):
    x, y, a, b = clouds()
    xn, yn, an, bn = np_(x, y, a, b)
    expected = ot.emd2(an, bn, ot.dist(xn, yn, metric=COSTS_POT[cost]))
    assert otf.emd(x, y, a, b, cost=cost).item() == pytest.approx(expected, rel=1e-10)


def test_pairwise_cost_matches_pot():
    x, y, _, _ = clouds()
    for cost, metric in COSTS_POT.items():
        np.testing.assert_allclose(otf.pairwise_cost(x, y, cost).numpy(), ot.dist(*np_(x, y), metric=metric), atol=1e-12)
    np.testing.assert_allclose(otf.pairwise_cost(x, y, "l1").numpy(), ot.dist(*np_(x, y), metric="cityblock"), atol=1e-12)


def test_sinkhorn_matches_pot_at_convergence():
    x, y, a, b = clouds()
    xn, yn, an, bn = np_(x, y, a, b)
    M = ot.dist(xn, yn)
    expected = ot.sinkhorn2(an, bn, M, 0.5, method="sinkhorn_log", stopThr=1e-13, numItermax=100_000)
    assert otf.sinkhorn(x, y, a, b, eps=0.5, iters=2000).item() == pytest.approx(expected, rel=1e-9)


def test_sinkhorn_fixed_iterations_match_pot_update_for_update():
    """Same updates as POT's sinkhorn_log (column first), so equal iteration counts give equal values."""
    x, y, _, _ = clouds()
    M = ot.dist(*np_(x, y))
    for iters in (1, 3, 10):
        expected = ot.sinkhorn2(np.ones(7) / 7, np.ones(5) / 5, M, 0.1, method="sinkhorn_log", stopThr=0, numItermax=iters)
        assert otf.sinkhorn(x, y, eps=0.1, iters=iters).item() == pytest.approx(expected, rel=1e-10)


def test_epsilon_scaling_converges_to_the_same_value_in_fewer_iterations():
    x, y, a, b = clouds()
    converged = otf.sinkhorn(x, y, a, b, eps=0.05, iters=3000)
    assert otf.sinkhorn(x, y, a, b, eps=0.05, iters=3000, scaling=0.9).item() == pytest.approx(converged.item(), rel=1e-10)
    error_plain = abs(otf.sinkhorn(x, y, a, b, eps=0.05, iters=300) - converged)
    error_scaled = abs(otf.sinkhorn(x, y, a, b, eps=0.05, iters=300, scaling=0.9) - converged)
    assert error_scaled < error_plain / 10


def test_sinkhorn_divergence_is_the_debiased_pot_formula():
    x, y, a, b = clouds()
    xn, yn, an, bn = np_(x, y, a, b)

    def pot(u, v, wu, wv):
        return ot.sinkhorn2(wu, wv, ot.dist(u, v), 2.0, method="sinkhorn_log", stopThr=1e-13, numItermax=10_000)

    expected = pot(xn, yn, an, bn) - 0.5 * (pot(xn, xn, an, an) + pot(yn, yn, bn, bn))
    assert otf.sinkhorn_divergence(x, y, a, b, eps=2.0, iters=1000).item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("p", [1, 2])
def test_sliced_wasserstein_matches_pot_with_the_same_projections(p):
    x, y, a, b = clouds(d=4)
    P = unit_projections(20, 4)
    directions = (P / P.norm(dim=1, keepdim=True)).T.numpy()
    expected = ot.sliced_wasserstein_distance(*np_(x, y, a, b), projections=directions, p=p) ** p
    assert otf.sliced_wasserstein(x, y, a, b, projections=P, p=p).item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("p", [1, 2])
def test_max_sliced_without_ascent_matches_pot(p):
    x, y, a, b = clouds(d=4)
    P = unit_projections(20, 4)
    directions = (P / P.norm(dim=1, keepdim=True)).T.numpy()
    expected = ot.max_sliced_wasserstein_distance(*np_(x, y, a, b), projections=directions, p=p) ** p
    assert otf.max_sliced_wasserstein(x, y, a, b, projections=P, p=p).item() == pytest.approx(expected, rel=1e-10)


def test_max_sliced_ascent_finds_the_separating_direction():
    """y is x shifted by 3 along e_0: the max over directions is W_2^2 = 9, along e_0."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=g, dtype=torch.float64)
    y = x + torch.tensor([3.0, 0, 0, 0, 0], dtype=torch.float64)
    start = torch.tensor([[0.3, 1.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    drawn_only = otf.max_sliced_wasserstein(x, y, projections=start)
    ascended = otf.max_sliced_wasserstein(x, y, projections=start, ascent_steps=60, ascent_lr=0.05)
    assert drawn_only.item() < 1.0
    assert ascended.item() == pytest.approx(9.0, rel=0.02)  # a fixed step ends within ~ascent_lr of the optimum


@pytest.mark.parametrize("reg", [1e-6, 1e-2])
def test_gaussian_w2_matches_pot_bures(reg):
    x, y, a, b = clouds(n=9, m=6, d=3)
    xn, yn, an, bn = np_(x, y, a, b)
    expected = ot.gaussian.empirical_bures_wasserstein_distance(xn, yn, reg=reg, ws=an[:, None], wt=bn[:, None]) ** 2
    assert otf.gaussian_w2(x, y, a, b, reg=reg).item() == pytest.approx(expected, rel=1e-9)


def test_gaussian_w2_diag_is_the_closed_form():
    x, y, a, b = clouds(n=9, m=6, d=3)
    xn, yn, an, bn = np_(x, y, a, b)
    mx, my = an @ xn, bn @ yn
    sx = np.sqrt(an @ (xn - mx) ** 2 + 1e-3)
    sy = np.sqrt(bn @ (yn - my) ** 2 + 1e-3)
    terms = otf.gaussian_w2_terms(x, y, a, b, covariance="diag", reg=1e-3)
    np.testing.assert_allclose(terms.numpy(), [((mx - my) ** 2).sum(), ((sx - sy) ** 2).sum()], rtol=1e-12)


def test_sinkhorn_histograms_match_pot_per_row():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(4, 6, generator=g, dtype=torch.float64).softmax(-1)
    q = torch.rand(4, 6, generator=g, dtype=torch.float64).softmax(-1)
    M = torch.rand(6, 6, generator=g, dtype=torch.float64)
    M = ((M + M.T) / 2).fill_diagonal_(0)
    expected = [ot.sinkhorn2(pi, qi, M.numpy(), 0.1, stopThr=1e-13, numItermax=100_000) for pi, qi in zip(*np_(p, q))]
    np.testing.assert_allclose(otf.sinkhorn_histograms(p, q, M, eps=0.1, iters=2000).numpy(), expected, rtol=1e-9)


def authors_sinkhorn_cost(w1, w2, cost, reg, iters, guard=0.0, start=None):
    """WKD mdistiller/distillers/WKD.py ``sinkhorn`` + ``wkd_logit_loss`` for one pair of
    histograms: u starts at 1/dim, v then u per iteration, value <u K v, cost>. ``guard`` is their
    1e-8 in the denominators."""
    K = torch.exp(-cost / reg)
    u = torch.full_like(w1, 1 / w1.shape[-1]) if start is None else start
    for _ in range(iters):
        v = w2 / (K.T @ u + guard)
        u = w1 / (K @ v + guard)
    return (u[:, None] * K * v[None, :] * cost).sum()


def wkd_logit_problem():
    g = torch.Generator().manual_seed(3)
    z_s = torch.randn(4, 7, generator=g, dtype=torch.float64).requires_grad_()
    z_t = torch.randn(4, 7, generator=g, dtype=torch.float64)
    M = torch.rand(7, 7, generator=g, dtype=torch.float64)
    M = ((M + M.T) / 2).fill_diagonal_(0)
    labels = torch.tensor([0, 3, 6, 3])
    return z_s, z_t, M, labels


def authors_wkd_l_distance(z_s, z_t, M, labels, iters, guard=0.0):
    """Their removal of the target class: softmax over, and cost between, the other classes."""
    total = 0.0
    for zs, zt, y in zip(z_s, z_t, labels.tolist()):
        rest = [c for c in range(len(zs)) if c != y]
        p, q = torch.softmax(zs[rest] / 4, 0), torch.softmax(zt[rest] / 4, 0)
        total = total + authors_sinkhorn_cost(p, q, M[rest][:, rest], 0.05, iters, guard)
    return total


def our_wkd_l_distance(z_s, z_t, M, labels, iters, guard=0.0):
    target = torch.nn.functional.one_hot(labels, z_s.shape[1]).bool()
    p, q = (torch.softmax(z.masked_fill(target, float("-inf")) / 4, 1) for z in (z_s, z_t))
    return otf.sinkhorn_histograms(p, q, M, eps=0.05, iters=iters, guard=guard).sum()


@pytest.mark.parametrize("guard", [0.0, 1e-8])  # 1e-8: the authors' guard, which WKD-L uses
@pytest.mark.parametrize("iters", [1, 10])  # 10: the WKD-L recipe's fixed count
def test_sinkhorn_histograms_zero_mass_bin_is_the_authors_removal_at_fixed_iterations(iters, guard):
    z_s, z_t, M, labels = wkd_logit_problem()
    expected = authors_wkd_l_distance(z_s, z_t, M, labels, iters, guard)
    (expected_grad,) = torch.autograd.grad(expected, z_s)
    got = our_wkd_l_distance(z_s, z_t, M, labels, iters, guard)
    (got_grad,) = torch.autograd.grad(got, z_s)
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)
    torch.testing.assert_close(got_grad, expected_grad, rtol=1e-12, atol=1e-14)


def test_a_uniform_start_on_every_bin_is_not_the_authors_removal():
    """What the comparison at 10 iterations catches: u = 1/K on the zero-mass bin too."""
    z_s, z_t, M, labels = wkd_logit_problem()
    target = torch.nn.functional.one_hot(labels, 7).bool()
    p, q = (torch.softmax(z.detach().masked_fill(target, float("-inf")) / 4, 1) for z in (z_s, z_t))
    everywhere = sum(authors_sinkhorn_cost(pi, qi, M, 0.05, 10, start=torch.full_like(pi, 1 / 7)) for pi, qi in zip(p, q))
    expected = authors_wkd_l_distance(z_s.detach(), z_t, M, labels, 10)
    assert abs(everywhere.item() / expected.item() - 1) > 1e-9


def ipot_algorithm_1(C, mu, nu, beta, outer, inner):
    """Xie et al. 2019, Algorithm 1, as printed."""
    b = np.ones(C.shape[1]) / C.shape[1]
    G, T = np.exp(-C / beta), np.ones_like(C)
    for _ in range(outer):
        Q = G * T
        for _ in range(inner):
            a = mu / (Q @ b)
            b = nu / (Q.T @ a)
        T = a[:, None] * Q * b[None, :]
    return (T * C).sum()


@pytest.mark.parametrize("outer, inner", [(1, 1), (5, 1), (50, 1), (20, 3)])
def test_ipot_is_algorithm_1_with_the_clouds_swapped(outer, inner):
    x, y, _, _ = clouds()
    C = ot.dist(*np_(x, y))
    expected = ipot_algorithm_1(C.T, np.ones(5) / 5, np.ones(7) / 7, 1.0, outer, inner)
    value = otf.ipot(x, y, cost="sqeuclidean", beta=1.0, outer_iters=outer, inner_iters=inner)
    assert value.item() == pytest.approx(expected, rel=1e-10)


def test_ipot_converges_to_exact_emd():
    x, y, a, b = clouds()
    exact = otf.emd(x, y, a, b, cost="cosine")
    assert otf.ipot(x, y, a, b, cost="cosine", beta=0.1, outer_iters=2000).item() == pytest.approx(exact.item(), rel=1e-6)


# -- gradients -------------------------------------------------------------------------------------
def leaf(t):
    return t.clone().requires_grad_()


def test_emd_gradient_matches_finite_differences():
    x, y, a, b = clouds()
    assert torch.autograd.gradcheck(lambda u, v: otf.emd(u, v, a, b), (leaf(x), leaf(y)))


def test_unrolled_sinkhorn_gradient_matches_finite_differences():
    x, y, a, b = clouds(n=5, m=4)
    solve = lambda u, v: otf.sinkhorn(u, v, a, b, eps=0.5, iters=30, grad="unrolled")  # noqa: E731
    assert torch.autograd.gradcheck(solve, (leaf(x), leaf(y)))


def test_envelope_gradient_is_that_of_the_entropic_objective():
    """At convergence, d/dx of min_P <P, C> + eps KL(P | a b^T) is <P*, dC/dx> (Danskin)."""
    x, y, a, b = clouds(n=5, m=4)
    eps = 2.0

    def entropic_objective(u):
        M = ot.dist(u, y.numpy())
        P = ot.sinkhorn(a.numpy(), b.numpy(), M, eps, method="sinkhorn_log", stopThr=1e-14, numItermax=10_000)
        return (P * M).sum() + eps * (P * np.log(P / np.outer(a.numpy(), b.numpy()))).sum()

    xg = leaf(x)
    otf.sinkhorn(xg, y, a, b, eps=eps, iters=1000).backward()
    h, numeric = 1e-6, np.zeros(x.shape)
    for index in np.ndindex(*x.shape):
        step = np.zeros(x.shape)
        step[index] = h
        numeric[index] = (entropic_objective(x.numpy() + step) - entropic_objective(x.numpy() - step)) / (2 * h)
    np.testing.assert_allclose(xg.grad.numpy(), numeric, rtol=1e-5, atol=1e-7)


def test_ipot_gradient_approaches_the_emd_gradient():
    x, y, a, b = clouds()
    grads = []
    exact = lambda u: otf.emd(u, y, a, b, cost="cosine")  # noqa: E731
    proximal = lambda u: otf.ipot(u, y, a, b, cost="cosine", beta=0.1, outer_iters=2000)  # noqa: E731
    for solve in (exact, proximal):
        u = leaf(x)
        solve(u).backward()
        grads.append(u.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)


def test_sliced_gradient_matches_finite_differences():
    x, y, a, b = clouds(d=4)
    P = unit_projections(6, 4)
    assert torch.autograd.gradcheck(lambda u, v: otf.sliced_wasserstein(u, v, a, b, projections=P), (leaf(x), leaf(y)))


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_gaussian_w2_gradient_matches_finite_differences(covariance):
    x, y, a, b = clouds(n=6, m=5, d=3)
    solve = lambda u, v: otf.gaussian_w2(u, v, a, b, covariance=covariance, reg=1e-3)  # noqa: E731
    assert torch.autograd.gradcheck(solve, (leaf(x), leaf(y)))


def test_sqrtm_backward_matches_finite_differences():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(2, 4, 4, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda m: otf.sqrtm(m @ m.mT + 0.1 * torch.eye(4, dtype=m.dtype)), (leaf(A),))
    root = otf.sqrtm(A @ A.mT)
    torch.testing.assert_close(root @ root, A @ A.mT)


# -- edge cases ------------------------------------------------------------------------------------
ALL = {
    "emd": lambda x, y, **kw: otf.emd(x, y, **kw),
    "ipot": lambda x, y, **kw: otf.ipot(x, y, **kw),
    "sinkhorn": lambda x, y, **kw: otf.sinkhorn(x, y, **kw),
    "sinkhorn_divergence": lambda x, y, **kw: otf.sinkhorn_divergence(x, y, **kw),
    "sliced_wasserstein": lambda x, y, **kw: otf.sliced_wasserstein(x, y, generator=torch.Generator().manual_seed(0), **kw),
    "max_sliced_wasserstein": lambda x, y, **kw: otf.max_sliced_wasserstein(
        x, y, ascent_steps=3, generator=torch.Generator().manual_seed(0), **kw),
    "gaussian_w2": lambda x, y, **kw: otf.gaussian_w2(x, y, **kw),
}
DISTANCES = ["emd", "sinkhorn_divergence", "sliced_wasserstein", "max_sliced_wasserstein", "gaussian_w2"]


@pytest.mark.parametrize("name", DISTANCES)
def test_identical_clouds_are_at_distance_zero(name):
    x, _, _, _ = clouds(n=16, d=4)
    x = torch.cat([x, x[:4]])  # duplicated points too
    assert abs(ALL[name](x, x.clone()).item()) < 1e-9


def test_ipot_on_identical_clouds_goes_to_zero():
    x, _, _, _ = clouds(n=16, d=4)
    assert otf.ipot(x, x.clone(), outer_iters=200).item() < 1e-6


@pytest.mark.parametrize("name", sorted(ALL))
def test_batch_of_two_points_and_duplicates_give_finite_gradients(name):
    x = torch.tensor([[0.0, 1.0], [0.0, 1.0]], requires_grad=True)  # the two points coincide
    y = torch.tensor([[1.0, 0.0], [2.0, 1.0]])
    value = ALL[name](x, y)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", sorted(ALL))
def test_leading_batch_dim_is_each_entry_solved_alone(name):
    x, y, _, _ = clouds(n=6, m=4, d=3, batch=3)
    batched = ALL[name](x, y)
    assert batched.shape == (3,)
    torch.testing.assert_close(batched, torch.stack([ALL[name](xi, yi) for xi, yi in zip(x, y)]))


@pytest.mark.parametrize("name", sorted(ALL))
def test_autocast_bf16_still_computes_in_fp32(name):
    x, y, _, _ = clouds(n=12, m=10, d=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = ALL[name](x.bfloat16(), y.bfloat16())
    assert value.dtype == torch.float32 and torch.isfinite(value)


@pytest.mark.parametrize("grad", ["envelope", "unrolled"])
def test_tiny_epsilon_stays_finite(grad):
    x, y, _, _ = clouds(n=32, m=24, d=8)
    x = x.float().requires_grad_()
    value = otf.sinkhorn(x, y.float(), eps=1e-5, iters=50, grad=grad)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()
    assert value.item() == pytest.approx(otf.emd(x, y.float()).item(), rel=0.05)


def test_drawn_projections_follow_the_generator():
    x, y, _, _ = clouds(d=6)

    def draw(seed):
        return otf.sliced_wasserstein(x, y, num_projections=8, generator=torch.Generator().manual_seed(seed))

    assert draw(3).item() == draw(3).item() != draw(4).item()


@pytest.mark.parametrize("call, message", [
    (lambda x, y: otf.emd(x, y, cost="hamming"), "expected one of: cosine, euclidean, l1, sqeuclidean"),
    (lambda x, y: otf.sinkhorn(x, y, grad="implicit"), "expected one of: envelope, unrolled"),
    (lambda x, y: otf.sinkhorn(x, y, eps=0.0), "eps must be > 0"),
    (lambda x, y: otf.sinkhorn(x, y, scaling=1.5), r"scaling must be in \[0, 1\)"),
    (lambda x, y: otf.ipot(x, y, outer_iters=0), "outer_iters must be an integer >= 1"),
    (lambda x, y: otf.sliced_wasserstein(x, y, p=3), "expected one of: 1, 2"),
    (lambda x, y: otf.gaussian_w2(x, y, covariance="low-rank"), "expected one of: diag, full"),
])
def test_bad_options_are_config_errors_naming_the_choices(call, message):
    x, y, _, _ = clouds()
    with pytest.raises(ConfigError, match=message):
        call(x, y)


# -- the fast paths: equal, unweighted clouds; one exponential per Sinkhorn sweep ---------------
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("cost", sorted(COSTS_POT))
def test_emd_of_equal_unweighted_clouds_is_the_assignment_pot_finds(seed, cost):
    x, y, _, _ = clouds(n=12, m=12, d=3, seed=seed)
    M = ot.dist(*np_(x, y), metric=COSTS_POT[cost])
    expected = ot.emd2(np.ones(12) / 12, np.ones(12) / 12, M)
    xg = leaf(x)
    value = otf.emd(xg, y, cost=cost)
    value.backward()
    assert value.item() == pytest.approx(expected, rel=1e-10)
    weighted = leaf(x)  # the network simplex, reached by passing the uniform weights explicitly
    uniform = torch.full((12,), 1 / 12, dtype=x.dtype)
    otf.emd(weighted, y, uniform, uniform, cost=cost).backward()
    torch.testing.assert_close(xg.grad, weighted.grad)


@pytest.mark.parametrize("p", [1, 2])
def test_sliced_of_equal_unweighted_clouds_matches_pot(p):
    x, y, _, _ = clouds(n=9, m=9, d=4)
    P = unit_projections(20, 4)
    directions = (P / P.norm(dim=1, keepdim=True)).T.numpy()
    expected = ot.sliced_wasserstein_distance(*np_(x, y), projections=directions, p=p) ** p
    assert otf.sliced_wasserstein(x, y, projections=P, p=p).item() == pytest.approx(expected, rel=1e-10)
    expected_max = ot.max_sliced_wasserstein_distance(*np_(x, y), projections=directions, p=p) ** p
    assert otf.max_sliced_wasserstein(x, y, projections=P, p=p).item() == pytest.approx(expected_max, rel=1e-10)


def test_sinkhorn_in_float32_follows_pot_where_exp_of_the_cost_underflows():
    """At C / eps up to ~2e4 every exp(-C / eps) of a row can underflow in float32; the sweep's
    shifted exponentials must still give POT's float64 log-domain updates, iteration for iteration."""
    x, y, _, _ = clouds(n=24, m=16, d=3, seed=3)
    x = x * 4.0  # far-apart points: costs up to ~200
    M = ot.dist(*np_(x, y))
    eps = 0.01
    assert (M / eps).max() > 1e4
    for iters in (1, 5, 40):
        expected = ot.sinkhorn2(np.ones(24) / 24, np.ones(16) / 16, M, eps, method="sinkhorn_log", stopThr=0, numItermax=iters)
        value = otf.sinkhorn(x.float(), y.float(), eps=eps, iters=iters)
        assert value.item() == pytest.approx(expected, rel=1e-5)
