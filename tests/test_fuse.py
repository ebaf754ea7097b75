"""--fuse changes how fast same-architecture students train, never what they learn: every student's
weights, BatchNorm running statistics, loss parameters and optimizer state after K fused steps equal
those of K unfused steps; a run resumes across --fuse; a diverging student diverges alone."""

from __future__ import annotations

import math
import shutil

import pandas as pd
import pytest
import torch

from bench.training.cohort import Acceleration, Scores, Student, cohort_step, new_student
from bench.recipes.resolve import TrainSettings, resolve_loss
from bench.data.base import DatasetInfo
from bench.models.network import create_network, probe_shapes
from bench.training.streams import StudentStreams
from bench.training.fuse import FusedStudents, fused
from helpers import interrupt_after_first_epoch, read_runs, synthetic_run
from losses import LOSSES, LossContext
from losses.base import MODEL_NEEDS
from losses.kd import KD

INFO = DatasetInfo("tiny", 5, 3, 16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), augment="crop-flip")
SETTINGS = TrainSettings(epochs=1, batch_size=8, lr=0.05, momentum=0.9, weight_decay=5e-4, milestones=(), gamma=0.1)
CPU = torch.device("cpu")
ATOL, RTOL = 1e-5, 1e-4  # fp32: a stacked convolution sums in another order than N separate ones


class KDWithOwnStep(KD):
    """KD stepping its own optimizer (as DOT does): such a student must train alone."""

    def optimizer_step(self, optimizer, task, distillation, average_gradients):
        super().optimizer_step(optimizer, task, distillation, average_gradients)


def cohort(losses: dict[str, str], weights: dict[str, float] | None = None,
           teacher: str = "test_resnet") -> tuple[torch.nn.Module, list[Student]]:
    """A teacher and one student per ``name: architecture``, each network initialised differently (so a
    fused step that mixed up members' slices would show)."""
    torch.manual_seed(0)
    teacher, _ = create_network(teacher, INFO)
    teacher.eval().requires_grad_(False)
    students = []
    for index, (name, architecture) in enumerate(losses.items()):
        torch.manual_seed(10 + index)
        network, _ = create_network(architecture, INFO)
        context = LossContext(probe_shapes(network, INFO, CPU), probe_shapes(teacher, INFO, CPU), 64)
        loss_name = name.split("@")[0]
        spec = resolve_loss("kd" if loss_name == "kd-own-step" else loss_name, {}, {})
        loss = (KDWithOwnStep if loss_name == "kd-own-step" else LOSSES.get(spec.name))(context, **spec.params)
        weight = (weights or {}).get(name, 1.0)
        students.append(new_student(name, 0, network, loss, SETTINGS, weight=weight, ce_weight=1.0))
    return teacher, students


def train(teacher, students: list[Student], accel: Acceleration, steps: int = 3, strong: bool = False) -> list:
    """``steps`` cohort steps on fixed random batches (with a second view when ``strong``); returns the members
    the cohort trained as."""
    needs = frozenset().union(*(s.loss.needs & MODEL_NEEDS for s in students))
    generator = torch.Generator().manual_seed(2)
    for student in students:
        student.network.train()
    with fused(students, accel) as members:
        streams = StudentStreams(len(members), CPU, enabled=False)
        for step in range(steps):
            images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=generator)
            labels = torch.randint(0, 5, (8,), generator=generator)
            views = [torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=generator)] if strong else []
            cohort_step(members, teacher, needs, images, labels, torch.arange(8), 0, step, accel, streams, *views)
    return members


def state(student: Student) -> dict[str, torch.Tensor]:
    """Everything a step changes: network weights and BN buffers, loss parameters, momentum buffers."""
    own = {f"network.{k}": v for k, v in student.network.state_dict().items()}
    own |= {f"loss.{k}": v for k, v in student.loss.state_dict().items()}
    momenta = student.optimizer.state_dict()["state"]
    own |= {f"momentum.{i}": s["momentum_buffer"] for i, s in momenta.items()}
    return {k: v.detach().clone() for k, v in own.items()}


def assert_same_state(got: Student, expected: Student) -> None:
    a, b = state(got), state(expected)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=ATOL, rtol=RTOL, msg=lambda m: f"{got.name} {key}: {m}")


LOSSES_FUSED = {"kd": "test_resnet", "fitnet": "test_resnet", "crd": "test_resnet"}


def test_fused_students_with_a_strong_view_train_like_unfused_ones(float64):
    """Both views go through the stacked network; a loss reading both (mlkd) and one applied per view (kd).
    In float64: two forwards per step grow fp32 rounding in kd's momenta to ~3e-3 of their scale."""
    losses = {"kd": "test_resnet", "mlkd": "test_resnet"}
    (teacher, plain), (_, stacked), (_, one_view) = cohort(losses), cohort(losses), cohort(losses)
    train(teacher, plain, Acceleration(), strong=True)
    train(teacher, stacked, Acceleration(fuse=True), strong=True)
    train(teacher, one_view, Acceleration(fuse=True))
    for got, expected, without in zip(stacked, plain, one_view):
        assert_same_state(got, expected)
        assert not torch.allclose(state(got)["network.body.fc.weight"], state(without)["network.body.fc.weight"])


def test_fused_students_train_like_unfused_ones():
    teacher, plain = cohort(LOSSES_FUSED)
    _, stacked = cohort(LOSSES_FUSED)
    initial = [state(s) for s in plain]
    train(teacher, plain, Acceleration())
    members = train(teacher, stacked, Acceleration(fuse=True))
    assert len(members) == 1 and isinstance(members[0], FusedStudents) and len(members[0].members) == 3
    for got, expected, before in zip(stacked, plain, initial):
        assert_same_state(got, expected)
        running = "network.body.bn1.running_mean"
        assert not torch.equal(state(expected)[running], before[running])  # BN statistics moved; each its own
        assert any(not torch.equal(state(expected)[k], before[k]) for k in before if k.startswith("network.body.conv"))
    # the networks own plain storage again: a checkpoint holds one student, not the stack
    weight = next(stacked[0].network.parameters())
    assert weight.untyped_storage().nbytes() == weight.numel() * weight.element_size()


def test_pre_activation_features_reach_fused_students(float64):
    """OFD reads the CIFAR zoo's pre-activation stage features, which the fused forward passes on too (in
    float64: OFD's margin mask turns an fp32 rounding difference at its edge into a whole element)."""
    zoo = {"ofd": "resnet8", "kd": "resnet8"}
    teacher, plain = cohort(zoo, teacher="resnet8")
    _, stacked = cohort(zoo, teacher="resnet8")
    train(teacher, plain, Acceleration(), steps=2)
    members = train(teacher, stacked, Acceleration(fuse=True), steps=2)
    assert isinstance(members[0], FusedStudents) and len(members) == 1
    for got, expected in zip(stacked, plain):
        assert_same_state(got, expected)


def test_members_of_different_students_are_not_mixed_up():
    """The comparison above can fail: two students trained from each other's initial weights differ."""
    teacher, plain = cohort(LOSSES_FUSED)
    _, swapped = cohort({"fitnet": "test_resnet", "kd": "test_resnet", "crd": "test_resnet"})
    train(teacher, plain, Acceleration())
    train(teacher, swapped, Acceleration(fuse=True))
    with pytest.raises(AssertionError):
        assert_same_state(swapped[1], plain[0])  # kd from fitnet's initial weights


def test_only_same_architecture_students_with_the_default_step_fuse():
    mixed = {"kd": "test_resnet", "fitnet": "test_resnet", "kd-own-step": "test_resnet",
             "kd@other": "test_efficientnet", "crd": "test_resnet"}
    teacher, plain = cohort(mixed)
    _, stacked = cohort(mixed)
    train(teacher, plain, Acceleration(), steps=2)
    members = train(teacher, stacked, Acceleration(fuse=True), steps=2)
    groups = [[s.name for s in m.members] if isinstance(m, FusedStudents) else m.name for m in members]
    assert groups == [["kd", "fitnet", "crd"], "kd-own-step", "kd@other"]
    for got, expected in zip(stacked, plain):
        assert_same_state(got, expected)


def test_a_diverging_student_diverges_alone():
    weights = {"fitnet": math.inf}  # its objective and then its weights become inf/NaN
    teacher, plain = cohort(LOSSES_FUSED, weights)
    _, stacked = cohort(LOSSES_FUSED, weights)
    train(teacher, plain, Acceleration())
    train(teacher, stacked, Acceleration(fuse=True))
    for student in stacked:
        student.finish_epoch(Scores(0.0, 0.0, 0.0), steps=3, wall_s=0.0)
    assert [s.diverged for s in stacked] == [False, True, False]
    assert not torch.isfinite(next(stacked[1].network.parameters())).all()
    for index in (0, 2):
        assert_same_state(stacked[index], plain[index])


def test_fuse_refuses_several_processes():
    from bench.run.runner import RunRequest, plan_run
    from bench.training.distributed import World
    from registry import ConfigError

    with pytest.raises(ConfigError, match="--fuse trains on one process"):
        plan_run(RunRequest(dataset="synthetic", accel=Acceleration(fuse=True), world=World(size=2)))


RUN_LOSSES = "kd,fitnet,crd"
RUN_ATOL = 1e-9


def interrupted_then_resumed(tmp, cache, cli, monkeypatch, first: tuple[str, ...], then: tuple[str, ...]):
    """Train until every student's first epoch is checkpointed, interrupt, resume with other flags."""
    let_finish = interrupt_after_first_epoch(monkeypatch, len(RUN_LOSSES.split(",")))
    args = synthetic_run(tmp, cache, "--losses", RUN_LOSSES)
    assert cli(*args, *first).code == 130
    let_finish()
    assert cli(*args, *then).code == 0
    return read_runs(tmp / "results")


def final_networks(cache) -> dict[str, dict[str, torch.Tensor]]:
    return {path.name: torch.load(path, weights_only=True)["network"] for path in (cache / "runs").glob("*.pt")}


@pytest.fixture
def float64():
    """Training in float64, where fused and unfused students agree to ~1e-12: a tight tolerance then tells
    a different computation from rounding. (In fp32, over the 16 steps of a synthetic run, rounding
    differences of a stacked convolution grow to ~1e-4 in some weights, as any change of kernel would.)"""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def test_a_run_resumes_across_fuse(tmp_path, cli, monkeypatch, float64):
    """Interrupted after epoch 1 and resumed, fused then unfused and unfused then fused: the same
    students as an uninterrupted unfused run (same checkpointed weights, same accuracies)."""
    plain = tmp_path / "plain" / "cache"
    assert cli(*synthetic_run(tmp_path / "plain", plain, "--losses", RUN_LOSSES)).code == 0
    expected = read_runs(tmp_path / "plain" / "results")
    reference = final_networks(plain)
    assert len(reference) == 3
    for first, then in ((("--fuse",), ()), ((), ("--fuse",))):
        tmp = tmp_path / f"{first}-{then}"
        shutil.copytree(plain, tmp / "cache", ignore=lambda folder, names: ["runs"] if folder == str(plain) else [])
        resumed = interrupted_then_resumed(tmp, tmp / "cache", cli, monkeypatch, first, then)
        pd.testing.assert_frame_equal(resumed[["loss", "run_id", "best_epoch", "curve"]],
                                      expected[["loss", "run_id", "best_epoch", "curve"]])
        networks = final_networks(tmp / "cache")
        assert networks.keys() == reference.keys()
        for run, weights in networks.items():
            for key, value in weights.items():
                torch.testing.assert_close(value, reference[run][key], atol=RUN_ATOL, rtol=0)


def test_harness_ablates_fuse(cli, tmp_path):
    result = cli("perf", "harness", "--teacher", "test_resnet", "--student", "test_resnet", "--losses", "kd,fitnet",
                 "--batch-size", "4", "--steps", "1", "--image-size", "16", "--num-classes", "5", "--device", "cpu",
                 "--ablate", "fuse", "--out", tmp_path)
    assert result.code == 0, result.err
    frame = pd.read_csv(next(tmp_path.glob("harness_cpu-*_b4.csv")))
    assert frame["variant"].tolist() == ["as asked"] * 3 + ["fuse on"]
    assert frame["fuse"].tolist() == [False] * 3 + [True]
