"""``bench run`` tries every loss on its first batch before training: a loss that breaks the contract
(a term that is not a scalar, a value the student's gradient never reaches) is refused in one line with
exit code 2, and every other student of the cohort trains exactly as without it and is recorded."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

import bench.run.runner
from bench.cli import main
from helpers import read_runs, synthetic_run
from losses import LOSSES, DistillLoss, Need, Outputs
from registry.core import Entry


class PluginKD(DistillLoss):
    """Hinton's KD at T = 4, as a plugin would write it; the broken ones below each break it in one way."""

    needs = frozenset({Need.LOGITS})

    def forward(self, student, teacher, batch):
        return self.per_example(student.logits, teacher.logits).mean()

    @staticmethod
    def per_example(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return F.kl_div(F.log_softmax(student / 4, 1), F.softmax(teacher / 4, 1), reduction="none").sum(1) * 16


class ReturnsAVector(PluginKD):
    def forward(self, student, teacher, batch):
        return self.per_example(student.logits, teacher.logits)  # one value per example: forgot the mean


class DetachesTheStudent(PluginKD):
    def __init__(self, ctx):
        super().__init__(ctx)
        self.scale = torch.nn.Parameter(torch.ones(()))  # trainable, so the value still requires a gradient

    def forward(self, student, teacher, batch):
        return self.scale * super().forward(Outputs(logits=student.logits.detach()), teacher, batch)


@pytest.fixture
def plugins(monkeypatch):
    """The loss registry with these losses added as a plugin provides them."""
    monkeypatch.setattr(LOSSES, "_entries", dict(LOSSES._entries))
    monkeypatch.setattr(LOSSES, "_aliases", dict(LOSSES._aliases))
    for name, cls in (("vector-kd", ReturnsAVector), ("detached-kd", DetachesTheStudent)):
        LOSSES.add(Entry(name, "a-plugin", "1.0", obj=cls))


@pytest.mark.parametrize(("bad", "why"), [
    ("vector-kd", "term 'loss' is shape [32]; a loss returns a scalar tensor or a dict of them"),
    ("detached-kd", "the value does not depend on the student's outputs: no gradient reaches the student"),
])
def test_a_broken_loss_is_refused_in_one_line_and_the_cohort_is_kept(bad, why, plugins, tmp_path, teacher_cache,
                                                                      capsys, monkeypatch):
    alone, cohort = tmp_path / "alone", tmp_path / "cohort"
    with monkeypatch.context() as untried:  # the reference: the good losses trained without any first-batch try
        untried.setattr(bench.run.runner, "refuse_broken_losses", lambda *args: None)
        assert main(synthetic_run(alone, teacher_cache, "--losses", "vanilla,kd", "--epochs", "1")) == 0
    cache = tmp_path / "cache"  # the same teacher, no student checkpoint to resume from
    shutil.copytree(teacher_cache / "teachers", cache / "teachers")
    capsys.readouterr()
    code = main(synthetic_run(cohort, cache, "--losses", f"vanilla,{bad},kd", "--epochs", "1"))
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"error: loss '{bad}' refused on its first batch: {why}"), err
    runs = read_runs(cohort / "results")
    assert runs["loss"].tolist() == ["kd", "vanilla"]
    assert not [p for p in (cache / "runs").glob("*.pt") if p.stem not in set(runs["run_id"])]  # no checkpoint of it
    numbers = ["run_id", "best_top1", "last_top1", "curve", "teacher_top1"]
    assert runs[numbers].equals(read_runs(alone / "results")[numbers])  # the try changed no student
    for run_id in runs["run_id"]:  # ... to the last bit: weights, BatchNorm statistics, optimizer state
        kept, reference = (torch.load(c / "runs" / f"{run_id}.pt", weights_only=True) for c in (cache, teacher_cache))
        assert all(torch.equal(kept["network"][k], v) for k, v in reference["network"].items())
