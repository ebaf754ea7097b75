"""--strong-view: a second, strongly augmented view of every batch (MLKD's recipe) for every student,
off by default, in the run id and the row; the first view stays what it was."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench.training.cohort import Acceleration, new_student
from bench.recipes.resolve import TrainSettings, resolve_loss
from bench.data.base import DatasetInfo, ImageTensors
from bench.data.stream import LoaderStream, ResidentStream, Shard
from bench.models.network import create_network, probe_shapes
from helpers import read_runs, synthetic_run
from losses import LOSSES, LossContext
from losses.base import Outputs
from registry import ConfigError

INFO = DatasetInfo("tiny", 5, 3, 16, (0.5,) * 3, (0.25,) * 3, augment="crop-flip")
CPU = torch.device("cpu")


def split(n: int = 24) -> ImageTensors:
    g = torch.Generator().manual_seed(0)
    return ImageTensors(torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g),
                        torch.randint(0, 5, (n,), generator=g))


def stream(shard: Shard = Shard()) -> ResidentStream:
    return ResidentStream(split(), INFO, 8, CPU, train=True, seed=3, shard=shard)


def test_the_strong_view_leaves_the_first_view_as_it_was():
    plain, viewed = list(stream().epoch(1)), list(stream().epoch(1, strong_view=True))
    for (images, labels, indices), (images_v, labels_v, indices_v, strong) in zip(plain, viewed):
        assert torch.equal(images, images_v) and torch.equal(labels, labels_v) and torch.equal(indices, indices_v)
        assert strong.shape == images.shape and strong.dtype == torch.uint8
        assert not torch.equal(strong, images)


def test_the_strong_view_is_a_function_of_seed_and_epoch_and_the_same_for_any_process_count():
    first, again = ([b[3] for b in stream().epoch(1, strong_view=True)] for _ in range(2))
    other_epoch = [b[3] for b in stream().epoch(2, strong_view=True)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other_epoch))
    halves = [[b[3] for b in stream(Shard(rank, 2)).epoch(1, strong_view=True)] for rank in (0, 1)]
    for whole, low, high in zip(first, *halves):
        assert torch.equal(whole, torch.cat([low, high]))


def test_only_a_resident_training_stream_has_a_strong_view():
    with pytest.raises(ValueError, match="training view"):
        next(ResidentStream(split(), INFO, 8, CPU, train=False, seed=3).epoch(0, strong_view=True))
    with pytest.raises(ConfigError, match="resident data path"):
        next(LoaderStream(split(), 8, CPU, train=True, seed=3, workers=0).epoch(0, strong_view=True))


def student(loss_name: str):
    torch.manual_seed(0)
    network, _ = create_network("test_resnet", INFO)
    shapes = probe_shapes(network, INFO, CPU)
    spec = resolve_loss(loss_name, {}, {})
    loss = LOSSES.get(loss_name)(LossContext(shapes, shapes, 24), **spec.params)
    settings = TrainSettings(epochs=1, batch_size=8, lr=0.05, momentum=0.9, weight_decay=5e-4, milestones=(), gamma=0.1)
    return new_student(loss_name, 0, network, loss, settings, weight=0.7, ce_weight=0.3), spec


def logits(seed: int) -> Outputs:
    return Outputs(logits=torch.randn(8, 5, generator=torch.Generator().manual_seed(seed)))


def two_views(first: int, second: int) -> Outputs:
    outputs = logits(first)
    outputs.strong = logits(second)
    return outputs


def test_a_loss_reading_one_view_trains_on_the_mean_over_both_views():
    """kd under a strong view: ce_weight * mean CE + weight * mean KD, each view's KD by its own teacher view."""
    kd, spec = student("kd")
    own, teacher, labels = two_views(1, 2), two_views(3, 4), torch.arange(8) % 5
    task, distillation = kd.objective(own, teacher, labels, torch.arange(8), 0, 0, Acceleration())
    T = spec.params["T"]

    def divergence(s: Outputs, t: Outputs) -> torch.Tensor:
        return F.kl_div(F.log_softmax(s.logits / T, 1), F.softmax(t.logits / T, 1), reduction="batchmean") * T * T

    ce = (F.cross_entropy(own.logits, labels) + F.cross_entropy(own.strong.logits, labels)) / 2
    kd_mean = (divergence(own, teacher) + divergence(own.strong, teacher.strong)) / 2
    assert task.item() == pytest.approx(0.3 * ce.item(), rel=1e-6)
    assert distillation.item() == pytest.approx(0.7 * kd_mean.item(), rel=1e-6)


def test_a_loss_reading_both_views_is_called_once_with_both():
    mlkd, _ = student("mlkd")
    own, teacher, labels = two_views(1, 2), two_views(3, 4), torch.arange(8) % 5
    _, distillation = mlkd.objective(own, teacher, labels, torch.arange(8), 0, 0, Acceleration())
    direct = sum(mlkd.loss(own, teacher, None).values())
    assert distillation.item() == pytest.approx(0.7 * direct.item(), rel=1e-6)


def test_bench_run_records_the_strong_view_in_the_row_and_the_run_id(tmp_path, teacher_cache, cli):
    viewed = cli(*synthetic_run(tmp_path, teacher_cache, "--losses", "kd,mlkd", "--strong-view"))
    plain = cli(*synthetic_run(tmp_path, teacher_cache, "--losses", "kd,mlkd"))
    assert viewed.code == plain.code == 0
    runs = read_runs(tmp_path / "results")
    assert sorted(runs["strong_view"].tolist()) == [False, False, True, True]
    assert runs["run_id"].nunique() == 4  # the plain runs were trained, not found finished
    by_view = runs.set_index(["loss", "strong_view"])["best_top1"]
    assert by_view[("kd", True)] != by_view[("kd", False)] or by_view[("mlkd", True)] != by_view[("mlkd", False)]
    leaderboard = (tmp_path / "results" / "synthetic" / "leaderboard.md").read_text()
    assert "strong view" in leaderboard


def test_the_strong_view_is_refused_on_the_loader_path_before_any_work(tmp_path, teacher_cache, cli):
    result = cli(*synthetic_run(tmp_path, teacher_cache, "--losses", "kd", "--strong-view", "--data-path", "loader"))
    assert result.code == 2
    assert "--strong-view needs a dataset held in memory" in result.err and len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()
