"""Collapsed runs: a network that predicts one class is marked, a healthy one is not, at the stated margins;
rows record it (tests/report/test_collapsed.py: how a report treats them)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from bench.training.cohort import Acceleration, evaluate
from bench.store.collapse import collapse_reason, collapse_reason_of_older_row
from helpers import FixedStream, read_runs, synthetic_run

CLASSES = 10


class Reader(nn.Module):
    """Logits from the image: its first pixel names a class (``constant``: class 3 for every image)."""

    def __init__(self, constant: bool):
        super().__init__()
        self.constant = constant
        self.scale = nn.Parameter(torch.ones(()))

    def extract(self, images, needs):
        guess = torch.full_like(images[:, 0, 0, 0], 3) if self.constant else images[:, 0, 0, 0]
        return SimpleNamespace(logits=self.scale * nn.functional.one_hot(guess.long(), CLASSES).float())


def balanced_batches():
    labels = torch.arange(200) % CLASSES
    images = labels[:, None, None, None].expand(200, 1, 2, 2).to(torch.uint8)  # the first pixel is the label
    return [(images[i:i + 64], labels[i:i + 64], torch.arange(i, min(i + 64, 200))) for i in range(0, 200, 64)]


def test_a_constant_prediction_is_marked_and_a_healthy_one_is_not():
    constant, healthy = evaluate([Reader(True), Reader(False)], FixedStream(balanced_batches()), Acceleration())
    assert constant.top1 == pytest.approx(10.0) and constant.top_class_share == pytest.approx(100.0)
    assert healthy.top1 == pytest.approx(100.0) and healthy.top_class_share == pytest.approx(10.0)
    reason = collapse_reason(constant.top1, constant.top_class_share, CLASSES)
    assert "chance (10.00 %)" in reason and "one class predicted for 100.0 %" in reason
    assert collapse_reason(healthy.top1, healthy.top_class_share, CLASSES) == ""


@pytest.mark.parametrize("top1, share, collapsed", [
    (14.9, 20.0, True),  # under 1.5 x chance (15 %)
    (15.1, 20.0, False),
    (60.0, 90.0, True),  # one class for 90 % of the images, though far from chance
    (60.0, 89.9, False),
])
def test_the_stated_margins(top1, share, collapsed):
    assert bool(collapse_reason(top1, share, CLASSES)) is collapsed


def test_older_rows_are_classified_from_top1_and_top5():
    assert "classified on read" in collapse_reason_of_older_row(10.0, 50.0)  # one class of ten, every image
    assert "on 100 classes" in collapse_reason_of_older_row(1.0, 5.0)
    assert collapse_reason_of_older_row(10.0, 50.1)  # within the tolerance
    assert collapse_reason_of_older_row(25.83, 91.72) == ""  # poor, not constant
    assert collapse_reason_of_older_row(85.0, 99.0) == ""


def test_a_row_records_the_share_and_the_status(tmp_path, cli, teacher_cache):
    assert cli(*synthetic_run(tmp_path, teacher_cache, "--losses", "vanilla", "--protocol", "fast")).code == 0
    row = read_runs(tmp_path / "results").iloc[0]
    assert 100 / 4 <= row["top_class_share"] <= 100
    expected = collapse_reason(row["last_top1"], row["top_class_share"], 4)
    assert bool(row["collapsed"]) is bool(expected) and (row["collapse_reason"] if expected else "") == (expected or "")
