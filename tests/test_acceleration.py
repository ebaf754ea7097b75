"""Speed flags change how fast a cohort trains, never what it learns; flags a device cannot honour fail early."""

from __future__ import annotations

import pytest
import torch

from bench.training.cohort import Acceleration, cohort_step, new_student
from bench.recipes.resolve import TrainSettings, resolve_loss
from bench.data.base import DatasetInfo
from bench.models.network import create_network, probe_shapes
from bench.training.streams import StudentStreams
from helpers import synthetic_run
from losses import LOSSES, LossContext
from losses.base import MODEL_NEEDS

INFO = DatasetInfo("tiny", 5, 3, 16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), augment="crop-flip")
SETTINGS = TrainSettings(epochs=1, batch_size=8, lr=0.05, momentum=0.9, weight_decay=5e-4, milestones=(), gamma=0.1)


def trained_weights(accel: Acceleration, device: torch.device, losses=("kd", "fitnet"), steps: int = 2) -> list[torch.Tensor]:
    """A cohort trained ``steps`` batches under ``accel``; returns every student's weights."""
    torch.manual_seed(0)
    teacher, _ = create_network("test_resnet", INFO)
    teacher.to(device).eval().requires_grad_(False)
    students = []
    for name in losses:
        torch.manual_seed(1)
        network, _ = create_network("test_resnet", INFO)
        network.to(device)
        context = LossContext(probe_shapes(network, INFO, device), probe_shapes(teacher, INFO, device), 64)
        spec = resolve_loss(name, {}, {})
        loss = LOSSES.get(spec.name)(context, **spec.params).to(device)
        accel.apply(network)
        students.append(new_student(name, 0, network, loss, SETTINGS, weight=1.0, ce_weight=1.0))
    accel.apply(teacher)
    needs = frozenset().union(*(s.loss.needs & MODEL_NEEDS for s in students))
    streams = StudentStreams(len(students), device, accel.streams)
    generator = torch.Generator().manual_seed(2)
    for step in range(steps):
        images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=generator).to(device)
        labels = torch.randint(0, 5, (8,), generator=generator).to(device)
        cohort_step(students, teacher, needs, images, labels, torch.arange(8, device=device), 0, step, accel, streams)
    return [p.detach().cpu() for s in students for p in s.network.parameters()]


def assert_same_weights(got: list[torch.Tensor], expected: list[torch.Tensor], atol: float) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, atol=atol, rtol=0)


def test_compiled_networks_train_like_eager_ones():
    cpu = torch.device("cpu")
    eager = trained_weights(Acceleration(), cpu, losses=("kd",))
    compiled = trained_weights(Acceleration(compile=True), cpu, losses=("kd",))
    assert_same_weights(compiled, eager, atol=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(eager, trained_weights(Acceleration(), cpu, ("kd",), steps=1)))


def test_channels_last_trains_like_the_default_format():
    cpu = torch.device("cpu")
    assert_same_weights(trained_weights(Acceleration(channels_last=True), cpu),
                        trained_weights(Acceleration(), cpu), atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA streams need a CUDA device")
def test_student_streams_train_like_one_stream():
    cuda = torch.device("cuda")
    assert_same_weights(trained_weights(Acceleration(streams=True), cuda), trained_weights(Acceleration(), cuda), atol=1e-5)


def test_defaults_follow_the_device():
    assert Acceleration.for_device(torch.device("cpu")) == Acceleration()
    assert Acceleration.for_device(torch.device("cuda")) == Acceleration(amp=True, channels_last=True)
    assert Acceleration.for_device(torch.device("cuda"), amp=False, compile=True, streams=True) == \
        Acceleration(amp=False, channels_last=True, compile=True, streams=True)


def test_streams_on_cpu_fail_before_anything_is_written(cli, tmp_path, teacher_cache):
    result = cli(*synthetic_run(tmp_path, teacher_cache, "--streams"))
    assert result.code == 2 and result.err.count("\n") == 1
    assert "--streams needs a CUDA device" in result.err
    assert not (tmp_path / "results").exists()
    result = cli("perf", "harness", "--streams", "--device", "cpu", "--out", tmp_path / "perf")
    assert result.code == 2 and "--streams needs a CUDA device" in result.err
    assert not (tmp_path / "perf").exists()
