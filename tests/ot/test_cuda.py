"""The OT distances on a CUDA device give the CPU's values and gradients (float32; skipped without a GPU)."""

import pytest
import torch

from losses.ot import functional as otf

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

DEVICES = ("cpu", "cuda")


def projections(x):
    return torch.randn(16, x.shape[-1], generator=torch.Generator().manual_seed(1)).to(x.device)


FUNCTIONS = {
    "emd (assignment)": lambda x, y: otf.emd(x, y),
    "emd (network simplex)": lambda x, y: otf.emd(x, y[:-3]),
    "ipot": lambda x, y: otf.ipot(x, y),
    "sinkhorn": lambda x, y: otf.sinkhorn(x, y, eps=0.05, iters=100),
    "sinkhorn, unrolled": lambda x, y: otf.sinkhorn(x, y, eps=0.5, iters=20, grad="unrolled"),
    "sinkhorn, eps-scaling": lambda x, y: otf.sinkhorn(x, y, eps=0.05, iters=100, scaling=0.8),
    "sinkhorn_divergence": lambda x, y: otf.sinkhorn_divergence(x, y, eps=0.05, iters=100),
    "sliced_wasserstein": lambda x, y: otf.sliced_wasserstein(x, y, projections=projections(x)),
    "sliced_wasserstein, n != m": lambda x, y: otf.sliced_wasserstein(x, y[:-3], projections=projections(x)),
    "max_sliced_wasserstein": lambda x, y: otf.max_sliced_wasserstein(x, y, projections=projections(x), ascent_steps=3),
    "gaussian_w2": lambda x, y: otf.gaussian_w2(x, y, reg=1e-4),
}


def clouds(batch=()):
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(*batch, 40, 8, generator=g), dim=-1)
    y = torch.nn.functional.normalize(torch.randn(*batch, 40, 8, generator=g) + 0.3, dim=-1)
    return x, y


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_cuda_value_and_gradient_are_the_cpu_ones(name):
    x, y = clouds()
    values, grads = [], []
    for device in DEVICES:
        xg = x.to(device).requires_grad_()
        value = FUNCTIONS[name](xg, y.to(device))
        value.backward()
        values.append(value.item())
        grads.append(xg.grad.cpu())
    assert values[1] == pytest.approx(values[0], rel=1e-4, abs=1e-7)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-6)


def test_cuda_batches_and_tiny_epsilon():
    x, y = clouds(batch=(3,))
    on_cpu = otf.sinkhorn(x, y, eps=1e-4, iters=200)
    on_cuda = otf.sinkhorn(x.cuda(), y.cuda(), eps=1e-4, iters=200)
    assert torch.isfinite(on_cuda).all()
    torch.testing.assert_close(on_cuda.cpu(), on_cpu, rtol=1e-4, atol=1e-6)
