"""SimKD: the projector's layers, the MSE, the reused teacher classifier and the evaluation logits that
go through it (DefangChen/SimKD models/util.py SimKD, helper/loops.py)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from bench.training.cohort import Acceleration, evaluate
from bench.data.base import DataRequest, load_dataset
from bench.models.network import create_network, probe_shapes
from helpers import FixedStream, read_runs, synthetic_run
from losses import LOSSES, DistillLoss, LossContext, ModelShapes, Need, Outputs
from losses.base import defines_evaluation
from registry import ConfigError

STUDENT = ModelShapes(features=((4, 16, 16), (6, 8, 8)), embedding=6, num_classes=5)
TEACHER = ModelShapes(features=((5, 16, 16), (12, 4, 4)), embedding=12, num_classes=5)


def preparation(head: nn.Module) -> SimpleNamespace:
    """All SimKD's prepare reads: the teacher network's classifier."""
    return SimpleNamespace(teacher=SimpleNamespace(body=SimpleNamespace(get_classifier=lambda: head)))


@pytest.fixture
def prepared(context):
    torch.manual_seed(0)
    loss = LOSSES.get("simkd")(context(STUDENT, TEACHER, 8), factor=2)
    head = nn.Linear(12, 5)
    loss.prepare(preparation(head))
    return loss, head


def pooled(x: np.ndarray, size: int) -> np.ndarray:
    """Average pool an NCHW array to size x size (an exact divisor)."""
    n, c, h, w = x.shape
    return x.reshape(n, c, size, h // size, size, w // size).mean(axis=(3, 5))


def test_projector_is_the_authors_bottleneck(prepared):
    """conv1x1 -> BN -> ReLU -> conv3x3 -> BN -> ReLU -> conv1x1 -> BN -> ReLU through t_n // factor, no bias."""
    loss, _ = prepared
    types = [type(m) for m in loss.projector]
    assert types == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] * 3
    convs = [m for m in loss.projector if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding, c.stride, c.groups) for c in convs] == [
        (6, 6, (1, 1), (0, 0), (1, 1), 1), (6, 6, (3, 3), (1, 1), (1, 1), 1), (6, 12, (1, 1), (0, 0), (1, 1), 1)]
    assert all(c.bias is None for c in convs)
    assert [m.num_features for m in loss.projector if isinstance(m, nn.BatchNorm2d)] == [6, 6, 12]


def test_factor_sets_the_bottleneck_width(context):
    loss = LOSSES.get("simkd")(context(STUDENT, TEACHER, 8), factor=4)
    assert loss.projector[0].out_channels == 3 and loss.projector[-3].out_channels == 12


def test_mse_after_pooling_the_larger_map(prepared, batch):
    """Student 8x8 vs teacher 4x4: the student is pooled to 4x4 before the projector; MSE over every element."""
    loss, _ = prepared
    g = torch.Generator().manual_seed(1)
    s = torch.randn(3, 6, 8, 8, generator=g)
    t = torch.relu(torch.randn(3, 12, 4, 4, generator=g))
    value = loss(Outputs(features=(torch.zeros(3, 4, 16, 16), s)), Outputs(features=(None, t)), batch(3)).item()
    with torch.no_grad():
        projected = loss.projector(torch.from_numpy(pooled(s.numpy(), 4))).double().numpy()
    assert value == pytest.approx(np.mean((projected - t.double().numpy()) ** 2), rel=1e-5)


def test_mse_pools_the_teacher_when_its_map_is_larger(context, batch):
    small = ModelShapes(features=((6, 2, 2),), embedding=6, num_classes=5)
    loss = LOSSES.get("simkd")(context(small, TEACHER, 8), factor=2)
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(2, 6, 2, 2, generator=g), torch.randn(2, 12, 4, 4, generator=g)
    value = loss(Outputs(features=(s,)), Outputs(features=(None, t)), batch(2)).item()
    with torch.no_grad():
        projected = loss.projector(s).double().numpy()
    assert value == pytest.approx(np.mean((projected - pooled(t.double().numpy(), 2)) ** 2), rel=1e-5)


def test_the_teachers_classifier_is_copied_frozen_and_outside_the_optimizer(prepared):
    loss, head = prepared
    assert torch.equal(loss.head_weight, head.weight) and torch.equal(loss.head_bias, head.bias)
    assert {"head_weight", "head_bias"} <= set(loss.state_dict())
    assert all(p is not loss.head_weight and p is not loss.head_bias for p in loss.parameters())


def test_evaluation_logits_go_through_the_teachers_classifier(prepared):
    loss, head = prepared
    loss.eval()
    s = torch.randn(3, 6, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got = loss.evaluation_logits(Outputs(features=(None, s)))
        projected = loss.projector(torch.from_numpy(pooled(s.numpy(), 4))).double().numpy()
    expected = projected.mean(axis=(2, 3)) @ head.weight.detach().double().numpy().T + head.bias.detach().numpy()
    assert got.double().numpy() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert loss.evaluation_needs == {Need.FEATURES} and defines_evaluation(loss)
    assert not defines_evaluation(LOSSES.get("kd")(None, T=4.0))


def test_a_teacher_without_a_linear_head_on_its_last_stage_is_a_config_error(context):
    loss = LOSSES.get("simkd")(context(STUDENT, TEACHER, 8), factor=2)
    with pytest.raises(ConfigError, match="one linear layer"):
        loss.prepare(preparation(nn.Sequential(nn.Linear(12, 12), nn.Linear(12, 5))))
    with_head = ModelShapes(features=((5, 16, 16), (12, 4, 4)), embedding=1280, num_classes=5,
                            model="mobilenetv2_cifar")
    with pytest.raises(ConfigError, match="'mobilenetv2_cifar' pools 1280 features but its last stage has 12"):
        LOSSES.get("simkd")(context(STUDENT, with_head, 8), factor=2)
    with pytest.raises(ConfigError, match="factor"):
        LOSSES.get("simkd")(context(STUDENT, TEACHER, 8), factor=13)


def test_evaluate_asks_only_a_loss_that_defines_evaluation(monkeypatch):
    from bench.data.synthetic import INFO
    torch.manual_seed(0)
    student, _ = create_network("resnet8", INFO)
    teacher, _ = create_network("resnet14", INFO)
    shapes = [probe_shapes(n, INFO, torch.device("cpu")) for n in (student, teacher)]
    simkd = LOSSES.get("simkd")(LossContext(*shapes, num_train=8), factor=2)
    simkd.prepare(SimpleNamespace(teacher=teacher))
    kd = LOSSES.get("kd")(None, T=4.0)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, 256, (8, 3, 16, 16), generator=g, dtype=torch.uint8),
                torch.randint(4, (8,), generator=g), torch.arange(8)) for _ in range(2)]
    monkeypatch.setattr(DistillLoss, "evaluation_logits",
                        lambda self, student: pytest.fail("asked a loss that does not define its evaluation"))
    (simkd_top1, *_), (kd_top1, *_) = evaluate([student, student], FixedStream(batches), Acceleration(), losses=[simkd, kd])
    with torch.no_grad():
        through_head = torch.cat([simkd.evaluation_logits(student.extract(x, frozenset({Need.FEATURES})))
                                  for x, _, _ in batches]).argmax(1)
        own = torch.cat([student.extract(x, frozenset()).logits for x, _, _ in batches]).argmax(1)
    labels = torch.cat([y for _, y, _ in batches])
    assert simkd_top1 == pytest.approx(100 * (through_head == labels).float().mean().item())
    assert kd_top1 == pytest.approx(100 * (own == labels).float().mean().item())
    assert not simkd.training  # evaluated with the projector's running BatchNorm statistics


@pytest.mark.slow
def test_a_runs_recorded_top1_is_the_accuracy_through_the_teachers_classifier(tmp_path, teacher_cache, cli):
    """Rebuilt from the run's last checkpoint, the student's accuracy through projector -> pool -> the
    teacher's classifier on the test split is the row's last top-1."""
    result = cli(*synthetic_run(tmp_path, teacher_cache, "--pair", "test_resnet-test_resnet", "--losses", "simkd",
                                "--epochs", "2"))
    assert result.code == 0, result.err
    row = read_runs(tmp_path / "results").iloc[0]
    data = load_dataset("synthetic", DataRequest())
    network, _ = create_network("test_resnet", data.info)
    shapes = probe_shapes(network, data.info, torch.device("cpu"))
    loss = LOSSES.get("simkd")(LossContext(shapes, shapes, len(data.train)), factor=2)
    state = torch.load(teacher_cache / "runs" / f"{row['run_id']}.pt", weights_only=True)
    network.load_state_dict(state["network"])
    loss.load_state_dict(state["loss"])
    network.eval()
    loss.eval()
    with torch.no_grad():
        features = network.extract(data.test.images, frozenset({Need.FEATURES}))
        through_head = loss.evaluation_logits(features).argmax(1)
    accuracy = 100 * (through_head == data.test.labels).float().mean().item()
    assert row["last_top1"] == pytest.approx(accuracy, abs=0.006)
    assert loss.head_weight.abs().sum() > 0  # the teacher's classifier came with the checkpoint
