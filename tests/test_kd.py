"""KD against its closed form (Hinton et al. 2015), written here from the definition."""

import math

import torch

from losses.kd import kd_divergence


def test_value_matches_closed_form():
    gen = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 7, generator=gen, dtype=torch.float64), torch.randn(5, 7, generator=gen, dtype=torch.float64)
    for T in (1.0, 4.0):
        got = kd_divergence(s, t, T).item()
        expected = T * T * sum(
            sum(math.exp(b) * (b - a) for a, b in zip(
                torch.log_softmax(s[i] / T, 0).tolist(), torch.log_softmax(t[i] / T, 0).tolist()))
            for i in range(5)) / 5
        assert math.isclose(got, expected, rel_tol=1e-6)


def test_gradient_is_T_times_probability_gap():
    """d/ds [T^2 KL(p_t || p_s)] = T (p_s - p_t) / B for softmax at temperature T."""
    gen = torch.Generator().manual_seed(1)
    s = torch.randn(4, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    t = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    T = 3.0
    kd_divergence(s, t, T).backward()
    expected = T * (torch.softmax(s.detach() / T, 1) - torch.softmax(t / T, 1)) / 4
    torch.testing.assert_close(s.grad, expected)


def test_zero_for_identical_logits_and_positive_otherwise():
    logits = torch.randn(3, 5)
    assert kd_divergence(logits, logits, 4.0).abs().item() < 1e-6
    assert kd_divergence(logits, logits.flip(1), 4.0).item() > 0
