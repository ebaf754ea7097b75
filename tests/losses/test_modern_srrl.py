"""SRRL: the connector's layers and place, the teacher's copied classifier and both MSE terms, pinned to the
authors' code (jingyang2017/KD_SRRL) and, as the ``pooled`` option, to SimKD's copy (DefangChen/SimKD)."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from bench.recipes.resolve import dataset_recipe, resolve_loss
from losses import LOSSES, ModelShapes, Need
from registry import ConfigError

# the student's last stage (4 channels) is not the map it pools (5 channels, after a head conv)
STUDENT = ModelShapes(features=((3, 4, 4), (4, 2, 2)), embedding=5, num_classes=6, feature_map=(5, 2, 2))
TEACHER = ModelShapes(features=((3, 4, 4), (8, 2, 2)), embedding=8, num_classes=6, feature_map=(8, 2, 2))


def preparation(head: nn.Module):
    """All SRRL's prepare reads: the teacher network's classifier."""
    return SimpleNamespace(teacher=SimpleNamespace(body=SimpleNamespace(get_classifier=lambda: head)))


def built(context, layout: str = "feature_map", kd_weight: float = 0.0):
    torch.manual_seed(0)
    loss = LOSSES.get("srrl")(context(STUDENT, TEACHER, 8), kd_weight=kd_weight, T=4.0, layout=layout)
    head = nn.Linear(8, 6)
    loss.prepare(preparation(head))
    return loss, head


def np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def authors_terms(loss, head, feature_map: np.ndarray, t_embedding: np.ndarray, t_logits: np.ndarray):
    """KD_SRRL's train(): ``conector(feat_s)``, ``statm_loss`` (squared gap of the spatial means, mean over
    channels, then batch) and ``F.mse_loss(net_t(feat_s=...), pred_t)`` (avgpool -> fc), written out in numpy
    with the connector's learned weights; BN in training mode, biased batch variance."""
    conv, bn = loss.connector[0], loss.connector[1]
    x = np.einsum("oc,bchw->bohw", np64(conv.weight)[:, :, 0, 0], feature_map)
    mean, var = x.mean(axis=(0, 2, 3), keepdims=True), x.var(axis=(0, 2, 3), keepdims=True)
    x = (x - mean) / np.sqrt(var + bn.eps) * np64(bn.weight)[None, :, None, None] + np64(bn.bias)[None, :, None, None]
    x = np.maximum(x, 0)
    pooled = x.mean(axis=(2, 3))
    stat = ((pooled - t_embedding) ** 2).mean(axis=1).mean()
    regressed = pooled @ np64(head.weight).T + np64(head.bias)
    return stat, ((regressed - t_logits) ** 2).mean()


def test_connector_is_conv1x1_bn_relu_drawn_from_the_authors_normal(context):
    loss, _ = built(context)
    conv, bn, relu = loss.connector
    assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and isinstance(relu, nn.ReLU)
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.bias) == (5, 8, (1, 1), None)
    assert bn.num_features == 8 and torch.equal(bn.weight, torch.ones(8)) and torch.equal(bn.bias, torch.zeros(8))
    wide = LOSSES.get("srrl")(context(ModelShapes(((64, 2, 2),), 64, 6), ModelShapes(((256, 2, 2),), 256, 6)),
                              kd_weight=0.0, T=4.0)
    # transfer_conv: normal_(0, sqrt(2 / n)), n = k * k * out_channels = 256 (PyTorch's default has std ~0.072)
    assert wide.connector[0].weight.std().item() == pytest.approx(math.sqrt(2 / 256), rel=0.05)


def test_the_teachers_classifier_is_copied_frozen_and_outside_the_optimizer(context):
    loss, head = built(context)
    assert torch.equal(loss.head_weight, head.weight) and torch.equal(loss.head_bias, head.bias)
    assert {"head_weight", "head_bias"} <= set(loss.state_dict())
    assert all(p is not loss.head_weight for p in loss.parameters())


def test_the_connector_maps_the_feature_map_and_pools_afterwards(context, outputs, batch):
    """The authors' order: connector on the map the embedding is pooled from (their ``fea``), then the pool."""
    loss, head = built(context)
    s, t, b = outputs(STUDENT, 4, seed=1), outputs(TEACHER, 4, seed=2), batch(4, num_classes=6, num_train=8)
    terms = loss(s, t, b)
    stat, regression = authors_terms(loss, head, np64(s.feature_map), np64(t.embedding), np64(t.logits))
    assert set(terms) == {"feature", "regression"}  # no KD term: the authors train CE + weight * SRRL
    assert terms["feature"].item() == pytest.approx(stat, rel=1e-5)
    assert terms["regression"].item() == pytest.approx(regression, rel=1e-5)


def test_pooled_layout_is_simkds_copy(context, outputs, batch):
    """SimKD's ``SRRL.forward``: the pooled vector as a 1x1 map through the connector; KD at T=4 beside it."""
    loss, head = built(context, layout="pooled", kd_weight=1.0)
    s, t, b = outputs(STUDENT, 4, seed=1), outputs(TEACHER, 4, seed=2), batch(4, num_classes=6, num_train=8)
    terms = loss(s, t, b)
    stat, regression = authors_terms(loss, head, np64(s.embedding)[:, :, None, None], np64(t.embedding),
                                     np64(t.logits))
    assert terms["feature"].item() == pytest.approx(stat, rel=1e-5)
    assert terms["regression"].item() == pytest.approx(regression, rel=1e-5)
    assert terms["kd"].item() == pytest.approx(LOSSES.get("kd")(None, T=4.0)(s, t, b).item(), rel=1e-6)


def test_defaults_are_the_authors():
    srrl = resolve_loss("srrl", dataset_recipe("cifar100"), {})
    assert (srrl.weight, srrl.ce_weight, srrl.params["kd_weight"], srrl.params["layout"]) == \
        (1.0, 1.0, 0.0, "feature_map")


def test_a_teacher_without_a_linear_head_is_a_config_error(context):
    loss, _ = built(context)
    with pytest.raises(ConfigError, match="one linear layer"):
        loss.prepare(preparation(nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 6))))


def test_an_unknown_layout_names_the_choices(context):
    with pytest.raises(ConfigError, match=r"layout must be one of \['feature_map', 'pooled'\]"):
        LOSSES.get("srrl")(context(STUDENT, TEACHER, 8), kd_weight=0.0, T=4.0, layout="after")


@pytest.mark.parametrize("model", ["resnet8", "wrn_16_2", "mobilenetv2_cifar", "test_efficientnet"])
def test_the_feature_map_is_the_map_the_embedding_pools(model):
    """SRRL's connector input: the authors' ``fea`` (before the avgpool), also after a head conv or a final BN-ReLU
    (MobileNetV2, WRN, timm's EfficientNet), where the last stage is another map."""
    from bench.data.synthetic import INFO
    from bench.models.network import create_network, probe_shapes

    network = create_network(model, INFO)[0].eval()
    shapes = probe_shapes(network, INFO, torch.device("cpu"))
    out = network.extract(torch.rand(2, 3, 16, 16), frozenset({Need.FEATURE_MAP, Need.EMBEDDING}))
    assert shapes.feature_map == tuple(out.feature_map.shape[1:]) and shapes.feature_map[0] == shapes.embedding
    torch.testing.assert_close(out.feature_map.mean(dim=(2, 3)), out.embedding)
