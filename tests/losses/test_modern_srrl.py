"""SRRL: the connector's layers, the teacher's copied classifier and both MSE terms (SimKD repository's SRRL)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from losses import LOSSES, ModelShapes
from registry import ConfigError

STUDENT = ModelShapes(features=((3, 4, 4),), embedding=5, num_classes=6)
TEACHER = ModelShapes(features=((3, 4, 4),), embedding=8, num_classes=6)


def preparation(head: nn.Module):
    """All SRRL's prepare reads: the teacher network's classifier."""
    return SimpleNamespace(teacher=SimpleNamespace(body=SimpleNamespace(get_classifier=lambda: head)))


@pytest.fixture
def prepared(context):
    torch.manual_seed(0)
    loss = LOSSES.get("srrl")(context(STUDENT, TEACHER, 8), kd_weight=1.0, T=4.0)
    head = nn.Linear(8, 6)
    loss.prepare(preparation(head))
    return loss, head


def test_connector_is_conv1x1_bn_relu(prepared):
    loss, _ = prepared
    conv, bn, relu = loss.connector
    assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and isinstance(relu, nn.ReLU)
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.bias) == (5, 8, (1, 1), None)
    assert bn.num_features == 8


def test_the_teachers_classifier_is_copied_frozen_and_outside_the_optimizer(prepared):
    loss, head = prepared
    assert torch.equal(loss.head_weight, head.weight) and torch.equal(loss.head_bias, head.bias)
    assert {"head_weight", "head_bias"} <= set(loss.state_dict())
    assert all(p is not loss.head_weight for p in loss.parameters())


def test_value(prepared, outputs, batch):
    loss, head = prepared
    s, t, b = outputs(STUDENT, 4, seed=1), outputs(TEACHER, 4, seed=2), batch(4, num_classes=6, num_train=8)
    terms = loss(s, t, b)
    mapped = loss.connector(s.embedding[:, :, None, None]).flatten(1).detach().double().numpy()
    regressed = mapped @ head.weight.detach().double().numpy().T + head.bias.detach().double().numpy()
    assert terms["feature"].item() == pytest.approx(np.mean((mapped - t.embedding.double().numpy()) ** 2), rel=1e-5)
    assert terms["regression"].item() == pytest.approx(np.mean((regressed - t.logits.double().numpy()) ** 2), rel=1e-5)
    assert terms["kd"].item() == pytest.approx(LOSSES.get("kd")(None, T=4.0)(s, t, b).item(), rel=1e-6)


def test_a_teacher_without_a_linear_head_is_a_config_error(context):
    loss = LOSSES.get("srrl")(context(STUDENT, TEACHER, 8), kd_weight=1.0, T=4.0)
    with pytest.raises(ConfigError, match="one linear layer"):
        loss.prepare(preparation(nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 6))))
