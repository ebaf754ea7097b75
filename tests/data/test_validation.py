"""The validation split: stratified, disjoint from every training batch, the same for every seed and loss;
epochs are selected on it, not on the test set; code that drives cohorts reads it after every epoch."""

from __future__ import annotations

import json
import math
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bench.recipes.resolve import RunSpec
from bench.data.base import DatasetInfo, ImageTensors, LoadedDataset
from bench.data.stream import make_stream
from bench.data.validation import carve_validation, stratified_indices
from bench.run.runner import RunRequest, execute, plan_run, validation_columns
from helpers import read_runs
from registry import ConfigError

INFO = DatasetInfo(name="toy", num_classes=3, in_chans=1, image_size=4, mean=(0.5,), std=(0.25,), augment="none")


def identified(labels: list[int]) -> LoadedDataset:
    """Images whose pixels spell their position in the training split (two base-256 digits)."""
    n = len(labels)
    ids = torch.arange(n)
    images = torch.stack([ids % 256, ids // 256], 1)[:, :, None].expand(n, 2, 8).reshape(n, 1, 4, 4).to(torch.uint8)
    train = ImageTensors(images, torch.tensor(labels))
    return LoadedDataset(INFO, train, ImageTensors(images[:2], torch.tensor(labels[:2])))


def ids_of(split: ImageTensors) -> list[int]:
    images = split.images.reshape(len(split), 2, 8)[:, :, 0].long()
    return (images[:, 0] + 256 * images[:, 1]).tolist()


def test_each_class_gives_its_share_rounded_by_largest_remainder():
    labels = torch.tensor([0] * 500 + [1] * 300 + [2] * 200 + [3] * 7)
    held_out = stratified_indices(labels, 100, "toy")
    counts = Counter(labels[held_out].tolist())
    exact = np.array([500, 300, 200, 7]) * 100 / 1007  # 49.65, 29.79, 19.86, 0.70: three more to the largest remainders
    expected = np.floor(exact).astype(int)
    expected[np.argsort(-(exact - expected), kind="stable")[:100 - expected.sum()]] += 1
    assert [counts[c] for c in range(4)] == expected.tolist() == [49, 30, 20, 1]
    assert len(set(held_out.tolist())) == 100


def test_the_split_depends_on_the_dataset_only():
    labels = torch.arange(1000) % 10
    assert torch.equal(stratified_indices(labels, 100, "toy"), stratified_indices(labels, 100, "toy"))
    assert not torch.equal(stratified_indices(labels, 100, "toy"), stratified_indices(labels, 100, "other"))


@pytest.mark.parametrize("size", [0, 12])
def test_a_split_that_leaves_nothing_on_one_side_is_refused(size):
    with pytest.raises(ConfigError, match="between 1 and 11"):
        stratified_indices(torch.arange(12) % 3, size, "toy")


def test_no_training_batch_of_any_seed_holds_a_validation_image():
    data = carve_validation(identified([i % 3 for i in range(300)]), 30)
    held_out = set(ids_of(data.validation))
    assert len(held_out) == 30 and len(data.train) == 270
    for seed in (0, 1, 7):
        stream = make_stream(data.train, data.info, 16, torch.device("cpu"), train=True, seed=seed)
        for epoch in range(2):
            seen = [i for images, _, indices in stream.epoch(epoch)
                    for i in ids_of(ImageTensors(data.train.images[indices], data.train.labels[indices]))]
            assert not held_out & set(seen) and len(seen) == len(set(seen)) == 16 * (270 // 16)


def test_every_seed_and_loss_trains_and_selects_on_the_same_images(tmp_path):
    plans = [plan_run(RunRequest(dataset="synthetic", losses=losses, seeds=seeds, device="cpu", results_dir=tmp_path,
                                 cache_dir=tmp_path / "cache"))
             for losses, seeds in (("vanilla", (0,)), ("kd,fitnet", (3, 5)))]
    for split in ("train", "validation"):
        first, second = (getattr(plan.student_data, split) for plan in plans)
        assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert len(plans[0].student_data.validation) == 64 and len(plans[0].data.train) == 320  # the teacher's: whole
    assert {run.validation_size for plan in plans for runs in plan.specs.values() for run in runs} == {64}
    assert Counter(plans[0].student_data.validation.labels.tolist()) == {c: 16 for c in range(4)}


def test_without_a_validation_split_the_run_ids_are_those_of_before(tmp_path):
    plan = plan_run(RunRequest(dataset="synthetic", losses="kd", device="cpu", results_dir=tmp_path,
                               cache_dir=tmp_path / "cache", validation_size=0))
    run = plan.specs[0][0]
    assert plan.student_data is plan.data and run.validation_size is None and "validation_size" not in run.as_dict()
    held_out = RunSpec(**{**vars(run), "validation_size": 64})
    assert held_out.run_id != run.run_id and held_out.as_dict()["validation_size"] == 64


def test_the_epoch_is_selected_on_validation_not_on_test():
    history = [{"val_top1": 80.0, "top1": 70.0, "top5": 90.0},  # validation's best epoch ...
               {"val_top1": 75.0, "top1": 74.0, "top5": 95.0}]  # ... is not test's
    columns = validation_columns(SimpleNamespace(validation_size=64), history)
    assert columns["selected_epoch"] == 1 and columns["val_top1"] == 80.0
    assert (columns["selected_top1"], columns["selected_top5"]) == (70.0, 90.0)
    assert json.loads(columns["val_curve"]) == [80.0, 75.0]
    assert set(validation_columns(SimpleNamespace(validation_size=None), history).values()) == {None}


def test_a_cohort_driver_reads_validation_every_epoch_and_can_stop_a_run(tmp_path):
    seen = []

    def on_epoch(run, epoch, record):
        seen.append((run.loss.name, epoch, record["val_top1"], record["top1"]))
        return run.loss.name == "kd"  # prune kd after its first epoch

    plan = plan_run(RunRequest(dataset="synthetic", losses="vanilla,kd", epochs=2, device="cpu", quiet=True,
                               results_dir=tmp_path / "results", cache_dir=tmp_path / "cache"))
    execute(plan, on_epoch=on_epoch)
    assert [(loss, epoch) for loss, epoch, *_ in seen] == [("vanilla", 1), ("kd", 1), ("vanilla", 2)]
    rows = read_runs(tmp_path / "results")
    assert rows["loss"].tolist() == ["vanilla"]  # a stopped run is not a finished one
    curve = [val for loss, _, val, _ in seen if loss == "vanilla"]
    assert json.loads(rows.loc[0, "val_curve"]) == [round(v, 2) for v in curve]
    assert all(0 <= v <= 100 and not math.isnan(v) for v in curve)
