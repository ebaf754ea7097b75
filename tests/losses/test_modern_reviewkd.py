"""ReviewKD: the ABF modules' layers and the hierarchical context loss, pinned to mdistiller's ReviewKD.py."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from losses import LOSSES, ModelShapes
from losses.reviewkd import hierarchical_context_loss
from registry import ConfigError

STUDENT = ModelShapes(features=((4, 16, 16), (6, 8, 8), (8, 4, 4), (10, 2, 2)), embedding=10, num_classes=5)
TEACHER = ModelShapes(features=((5, 16, 16), (7, 8, 8), (9, 8, 8), (12, 4, 4)), embedding=12, num_classes=5)


def layer_types(module: nn.Module) -> list[type]:
    return [type(m) for m in module.modules() if not isinstance(m, nn.Sequential) and m is not module]


@pytest.fixture
def loss(context):
    torch.manual_seed(0)
    return LOSSES.get("reviewkd")(context(STUDENT, TEACHER, 8), stages=[-3, -2, -1], warmup=20 / 240)


def test_abf_layers_are_the_authors(loss):
    """conv1: 1x1 conv (no bias) -> BN; conv2: 3x3 conv (no bias) -> BN; attention: 1x1 conv -> sigmoid."""
    assert len(loss.abfs) == 4  # three stages and the pooled embedding
    for abf in loss.abfs[:-1]:
        assert layer_types(abf) == [nn.Conv2d, nn.BatchNorm2d, nn.Conv2d, nn.BatchNorm2d, nn.Conv2d, nn.Sigmoid]
        assert abf.att_conv[0].bias is not None and abf.att_conv[0].out_channels == 2
    assert loss.abfs[-1].att_conv is None  # the deepest level fuses nothing
    for abf, c_in, c_out in zip(loss.abfs, [6, 8, 10, 10], [7, 9, 12, 12]):
        conv1, conv2 = abf.conv1[0], abf.conv2[0]
        assert (conv1.in_channels, conv1.out_channels, conv1.kernel_size, conv1.bias) == (c_in, 10, (1, 1), None)
        assert (conv2.in_channels, conv2.out_channels, conv2.kernel_size, conv2.padding) == (10, c_out, (3, 3), (1, 1))
        assert conv2.bias is None


def test_abf_width_is_capped_at_512(context):
    wide = ModelShapes(features=((8, 4, 4),), embedding=640, num_classes=5)
    loss = LOSSES.get("reviewkd")(context(wide, wide, 8), stages=[-1], warmup=0.0)
    assert loss.abfs[0].conv1[0].out_channels == 512


def np_pool(x: np.ndarray, size: int) -> np.ndarray:
    b, c, h, w = x.shape
    return x.reshape(b, c, size, h // size, size, w // size).mean(axis=(3, 5))


@pytest.mark.parametrize(("size", "pools"), [(8, [(4, 0.5), (2, 0.25), (1, 0.125)]), (4, [(2, 0.5), (1, 0.25)]),
                                              (1, [])])
def test_hierarchical_context_loss(size, pools):
    """A pooled size is used only below the map's size (``if l >= h: continue``); weights halve."""
    g = torch.Generator().manual_seed(size)
    s, t = torch.randn(2, 3, size, size, generator=g), torch.randn(2, 3, size, size, generator=g)
    a, b = s.double().numpy(), t.double().numpy()
    value = np.mean((a - b) ** 2) + sum(w * np.mean((np_pool(a, p) - np_pool(b, p)) ** 2) for p, w in pools)
    expected = value / (1 + sum(w for _, w in pools))
    assert hierarchical_context_loss(s, t).item() == pytest.approx(expected, rel=1e-5)


def test_value_fuses_deep_to_shallow(loss, outputs, batch):
    s, t, b = outputs(STUDENT, 3, seed=1), outputs(TEACHER, 3, seed=2), batch(3, epoch=4, num_classes=5, num_train=8)
    b.epochs = 240
    got = loss(s, t, b).item()
    levels = [*s.features[1:], s.embedding[:, :, None, None]]
    targets = [*t.features[1:], t.embedding[:, :, None, None]]
    total, deeper = 0.0, None
    for abf, x, target in reversed(list(zip(loss.abfs, levels, targets))):
        x = abf.conv1(x)
        if deeper is not None:
            deeper = F.interpolate(deeper, x.shape[-2:], mode="nearest")
            z = abf.att_conv(torch.cat([x, deeper], 1))
            x = x * z[:, 0:1] + deeper * z[:, 1:2]
        x = F.interpolate(x, target.shape[-2:], mode="nearest")
        deeper = x
        total += hierarchical_context_loss(abf.conv2(x), target).item()
    assert got == pytest.approx(4 / 20 * total, rel=1e-5)  # the authors' min(1, epoch / 20), epochs from 0


@pytest.mark.parametrize("stages", [[], [-1, -1], [-1, -2], [-6], [4]])
def test_bad_stages_are_a_config_error(context, stages):
    with pytest.raises(ConfigError, match="stage"):
        LOSSES.get("reviewkd")(context(STUDENT, TEACHER, 8), stages=stages, warmup=0.0)
