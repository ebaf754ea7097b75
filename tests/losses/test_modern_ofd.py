"""OFD: the margin's closed form, the partial L2, the connector, the stage weights, and the CIFAR zoo's
pre-activation features, pinned to clovaai/overhaul-distillation and mdistiller's OFD.py."""

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.stats
import timm
import torch
import torch.nn.functional as F
from torch import nn

import bench.models.zoo  # noqa: F401  (registers the CIFAR models)
from bench.data.base import DatasetInfo
from bench.models.network import create_network, probe_shapes
from helpers import read_runs, synthetic_run
from losses import LOSSES, ModelShapes, Need, Outputs
from losses.ofd import bn_margin, partial_l2
from registry import ConfigError

STUDENT = ModelShapes(features=((4, 16, 16), (6, 16, 16), (8, 8, 8), (10, 4, 4)), embedding=10, num_classes=5,
                      preact_features=((6, 16, 16), (8, 8, 8), (10, 4, 4)), model="student")
TEACHER = ModelShapes(features=((5, 32, 32), (7, 32, 32), (9, 16, 16), (11, 16, 16), (12, 8, 8)), embedding=12,
                      num_classes=5, preact_features=((7, 32, 32), (9, 16, 16), (11, 16, 16), (12, 8, 8)),
                      model="teacher")
INFO = DatasetInfo("tiny", 5, 3, 16, (0.5,) * 3, (0.25,) * 3, "none")


def preparation(body: nn.Module) -> SimpleNamespace:
    """All OFD's prepare reads: the teacher network's BatchNorms."""
    return SimpleNamespace(teacher=SimpleNamespace(body=body))


def random_bn_teacher(name: str) -> nn.Module:
    """A zoo model whose BatchNorms have the spread of a trained one (init has weight 1, bias 0)."""
    torch.manual_seed(0)
    body = timm.create_model(name, num_classes=5)
    for m in body.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(-2, 2)
            m.bias.data.uniform_(-3, 3)
    return body


# -- the margin ---------------------------------------------------------------------------------
def test_margin_is_the_mean_of_the_negative_responses():
    """E[x | x < 0] for x ~ N(bias, |weight|^2), from scipy's truncated normal; -3 |weight| where
    P(x < 0) <= 1e-3 (the authors' fallback)."""
    weight = torch.tensor([1.0, -0.5, 2.0, 0.3, 1.0, 1.0])
    bias = torch.tensor([0.0, 0.4, -1.5, 0.1, 3.0, 4.0])  # the last: P(x < 0) = cdf(-4) < 1e-3
    expected = []
    for s, m in zip(weight.abs().double().numpy(), bias.double().numpy()):
        if scipy.stats.norm.cdf(-m / s) > 1e-3:
            expected.append(scipy.stats.truncnorm(-np.inf, -m / s, loc=m, scale=s).mean())
        else:
            expected.append(-3 * s)
    assert bn_margin(weight, bias).double().numpy() == pytest.approx(expected, rel=1e-5)
    assert expected[-1] == -3.0 and expected[-2] != -3.0  # cdf(-3) = 1.3e-3 stays on the closed form


def test_prepare_reads_the_margins_from_the_teachers_bn(context):
    """The last two teacher stages are distilled; their margins come from the BNs mdistiller's
    get_bn_before_relu names: ``layer{i}[-1].bn2`` of a CIFAR ResNet."""
    body = random_bn_teacher("resnet8")
    shapes = probe_shapes(create_network("resnet8", INFO)[0], INFO, torch.device("cpu"))
    student = ModelShapes(STUDENT.features, 10, 5, preact_features=STUDENT.preact_features[-2:], model="student")
    loss = LOSSES.get("ofd")(context(student, shapes, 8))
    loss.prepare(preparation(body))
    bns = [body.stages[1][-1].conv2[1], body.stages[2][-1].conv2[1]]
    expected = torch.cat([bn_margin(bn.weight.detach(), bn.bias.detach()) for bn in bns])
    assert torch.equal(loss.margins, expected) and (loss.margins < 0).all()
    assert "margins" in loss.state_dict() and all(p is not loss.margins for p in loss.parameters())


@pytest.mark.parametrize(("name", "bns"), [
    ("resnet8", lambda m: [s[-1].conv2[1] for s in m.stages]),  # layer{i}[-1].bn2
    ("resnet50_cifar", lambda m: [s[-1].conv3[1] for s in m.stages]),  # layer{i}[-1].bn3
    ("wrn_16_1", lambda m: [m.stages[1][0].bn1, m.stages[2][0].bn1, m.norm[0]]),  # block{2,3}.layer[0].bn1, bn1
    ("vgg8_cifar", lambda m: [g[-2] for g in m.stages]),  # block{i}[-1] (the ReLU stripped)
    ("mobilenetv2_cifar", lambda m: [s[-1].conv_pwl[1] for s in m.stages]),  # blocks[1,2,4,6][-1].conv[-1]
])
def test_teacher_bns_are_the_authors(name, bns):
    body = timm.create_model(name, num_classes=5)
    assert all(a is b for a, b in zip(body.preact_norms(), bns(body), strict=True))


@pytest.mark.parametrize("name", ["shufflenetv1_cifar", "shufflenetv2_cifar"])
def test_a_shufflenet_teacher_is_a_config_error(context, name):
    """No single BatchNorm makes a ShuffleNet stage's output (mdistiller raises for it too)."""
    shapes = probe_shapes(create_network(name, INFO)[0], INFO, torch.device("cpu"))
    loss = LOSSES.get("ofd")(context(STUDENT, shapes, 8))
    with pytest.raises(ConfigError, match=f"ofd needs a teacher with a BatchNorm .*'{name}'"):
        loss.prepare(preparation(timm.create_model(name, num_classes=5)))


# -- the partial L2 -----------------------------------------------------------------------------
def test_partial_l2_on_a_hand_made_tensor():
    """Target max(teacher, margin); skipped where the target is not positive and the student is below it."""
    teacher = torch.tensor([2.0, -0.5, -3.0, -0.2, -3.0, 0.5])
    student = torch.tensor([1.0, 0.0, -2.0, -0.5, -0.5, 0.1])
    #   t > 0: (1 - 2)^2 = 1;  t=-0.5 > m, s above: 0.5^2;  t < m, s below m: 0;  s below t: 0;
    #   t < m, s above m: (-0.5 + 1)^2;  t > 0, s below t (still counted): 0.4^2
    expected_per_example = 1 + 0.25 + 0 + 0 + 0.25 + 0.16
    s, t = student.view(1, 1, 1, 6).repeat(2, 1, 1, 1), teacher.view(1, 1, 1, 6).repeat(2, 1, 1, 1)
    margin = torch.tensor(-1.0).view(1, 1, 1, 1)
    assert partial_l2(s, t, margin).item() == pytest.approx(expected_per_example)  # summed, divided by batch 2


def mdistiller_feat_loss(source, target, margin):
    """mdistiller's three-case form of the same loss, ``.mean(dim=0).sum()``."""
    loss = ((source - margin) ** 2 * ((source > margin) & (target <= margin))
            + (source - target) ** 2 * ((source > target) & (target > margin) & (target <= 0))
            + (source - target) ** 2 * (target > 0))
    return loss.mean(dim=0).sum()


def test_partial_l2_equals_mdistillers_three_cases():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(4, 3, 5, 5, generator=g), torch.randn(4, 3, 5, 5, generator=g)
    margin = torch.tensor([-0.3, -1.0, -0.05]).view(1, 3, 1, 1)
    assert partial_l2(s, t, margin).item() == pytest.approx(mdistiller_feat_loss(s, t, margin).item(), rel=1e-6)


# -- the connector and the stage weights ---------------------------------------------------------
@pytest.fixture
def loss(context):
    torch.manual_seed(0)
    return LOSSES.get("ofd")(context(STUDENT, TEACHER, 8))


def test_connector_is_conv1x1_then_bn(loss):
    """Conv2d 1x1, stride 1, no bias, from the student's to the teacher's channels, then BN; no ReLU."""
    assert len(loss.connectors) == 3  # the last three of both (mdistiller's _align_list)
    for conn, c_in, c_out in zip(loss.connectors, [6, 8, 10], [9, 11, 12]):
        assert [type(m) for m in conn] == [nn.Conv2d, nn.BatchNorm2d]
        conv, bn = conn
        assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.bias) == \
            (c_in, c_out, (1, 1), (1, 1), None)
        assert bn.num_features == c_out and torch.equal(bn.weight, torch.ones(c_out)) and not bn.bias.any()


def test_connector_init_is_normal_with_he_fan_out(context):
    """weight ~ N(0, 2 / (k * k * out_channels)), as the authors' build_feature_connector."""
    wide = ModelShapes(((4, 4, 4), (256, 4, 4)), 256, 5, preact_features=((256, 4, 4),))
    torch.manual_seed(0)
    weight = LOSSES.get("ofd")(context(wide, wide, 8)).connectors[0][0].weight
    assert weight.mean().item() == pytest.approx(0.0, abs=3e-3)
    assert weight.std().item() == pytest.approx(np.sqrt(2 / 256), rel=0.03)


def test_value_weights_stages_by_powers_of_two(loss, batch):
    """Stage i of n at 1 / 2 ** (n - i - 1); the teacher's last stages; its larger maps average-pooled."""
    g = torch.Generator().manual_seed(3)
    student = Outputs(preact_features=tuple(torch.randn(2, *s, generator=g) for s in STUDENT.preact_features))
    teacher = Outputs(preact_features=tuple(torch.randn(2, *s, generator=g) for s in TEACHER.preact_features))
    with torch.no_grad():
        loss.margins.uniform_(-1.0, -0.1)
        value = loss(student, teacher, batch(2)).item()
    margins = loss.margins.split([9, 11, 12])
    expected = 0.0
    for i, (s, t, m) in enumerate(zip(student.preact_features, teacher.preact_features[1:], margins)):
        with torch.no_grad():
            source = loss.connectors[i](s)
        target = F.avg_pool2d(t, t.shape[-1] // s.shape[-1])
        expected += mdistiller_feat_loss(source, target, m.view(1, -1, 1, 1)).item() / 2 ** (2 - i)
    assert value == pytest.approx(expected, rel=1e-5)


def test_a_model_without_pre_activation_features_is_a_config_error(context):
    plain = ModelShapes(features=((3, 4, 4),), embedding=3, num_classes=5, model="test_resnet")
    with pytest.raises(ConfigError, match="ofd needs pre-activation stage features .*the student 'test_resnet'"):
        LOSSES.get("ofd")(context(plain, TEACHER, 8))
    with pytest.raises(ConfigError, match="ofd needs pre-activation stage features .*the teacher 'test_resnet'"):
        LOSSES.get("ofd")(context(STUDENT, plain, 8))
    network, _ = create_network("test_resnet", INFO)
    with pytest.raises(ConfigError, match="model 'test_resnet' gives no pre-activation stage features"):
        network.extract(torch.zeros(1, 3, 16, 16), frozenset({Need.PREACT_FEATURES}))


# -- the CIFAR zoo's pre-activation features ----------------------------------------------------
def passed_on(body: nn.Module, i: int, preact: torch.Tensor) -> torch.Tensor:
    """What the network does with a pre-activation tap: a ReLU, or nothing (MobileNetV2's linear bottleneck)."""
    return preact if isinstance(body, bench.models.zoo.mobilenetv2_cifar.MobileNetV2Cifar) else F.relu(preact)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", ["resnet8", "resnet50_cifar", "vgg8_cifar", "mobilenetv2_cifar",
                                  "shufflenetv1_cifar", "shufflenetv2_cifar"])
def test_pre_activation_taps_are_the_stage_outputs_before_the_relu(name, train):
    torch.manual_seed(0)
    body = random_bn_teacher(name).train(train)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        state = {k: v.clone() for k, v in body.state_dict().items()}
        final, taps = body.forward_intermediates(x)
        body.load_state_dict(state)
        final_again, taps_again, preacts = body.forward_preact_intermediates(x)
    assert torch.allclose(final_again, final, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(taps_again, taps, strict=True))
    assert len(preacts) == len(taps) - 1  # every stage, not the stem
    for i, (preact, tap) in enumerate(zip(preacts, taps[1:])):
        assert (preact < 0).any(), f"stage {i} has no negative response"
        assert torch.allclose(passed_on(body, i, preact), tap, atol=1e-5)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_wrn_pre_activation_taps_are_the_next_bn_output(train):
    """A WRN stage output goes through the next BN-ReLU: the tap is that BN's output (mdistiller's
    block2.layer[0].bn1, block3.layer[0].bn1, bn1), and running statistics move once a step, as in a
    plain forward."""
    body = random_bn_teacher("wrn_16_1").train(train)
    plain = copy.deepcopy(body)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        final, taps, preacts = body.forward_preact_intermediates(x)
        reference = plain.forward_features(x)
        nexts = [body.stages[1][0].bn1, body.stages[2][0].bn1, body.norm[0]]
        expected = [copy.deepcopy(bn)(tap) for bn, tap in zip(nexts, taps[1:])]  # in train mode: batch statistics
    assert torch.allclose(final, reference, atol=1e-5)
    assert torch.allclose(F.relu(preacts[-1]), final, atol=1e-5)
    for preact, bn_output in zip(preacts, expected, strict=True):
        assert (preact < 0).any() and torch.allclose(preact, bn_output, atol=1e-5)
    for (key, a), b in zip(body.state_dict().items(), plain.state_dict().values()):
        assert torch.equal(a, b), key


# -- a cohort ------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("pair", [("resnet14", "resnet8"), ("resnet14", "wrn_16_1")], ids=["same", "cross"])
def test_one_cohort_with_ofd_and_simkd_on_cifar_zoo_pairs(pair, tmp_path, teacher_cache, cli):
    teacher, student = pair
    result = cli(*synthetic_run(tmp_path, teacher_cache, "--teacher", teacher, "--student", student,
                                "--losses", "ofd,simkd", "--epochs", "1"))
    assert result.code == 0, result.err
    runs = read_runs(tmp_path / "results")
    assert sorted(runs["loss"]) == ["ofd", "simkd"]
    assert not runs["diverged"].any() and runs["last_top1"].between(0, 100).all()


@pytest.mark.slow
def test_ofd_on_a_model_without_pre_activation_features_is_one_error_line(tmp_path, teacher_cache, cli):
    fresh_cache = tmp_path / "cache"  # no cached teacher: the error must come before one is trained
    result = cli(*synthetic_run(tmp_path, fresh_cache, "--pair", "test_resnet-test_resnet", "--losses", "ofd"))
    assert result.code == 2
    assert result.err.strip().startswith("error: ofd needs pre-activation stage features of both models; the "
                                         "student 'test_resnet' gives none")
    assert len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "results" / "synthetic" / "runs.csv").exists()
    assert not list(fresh_cache.rglob("*.pt"))  # said in the plan, before any teacher is trained
