"""The conformance kit: every registered loss passes it, and each kind of broken loss is caught by its check."""

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.conformance import CHECKS, ConformanceError, ConformanceWarning, parametrize_with_checks, run_checks
from losses import LOSSES, Batch, DistillLoss, LossContext, Need, Outputs, Preparation


@parametrize_with_checks(LOSSES.names())
def test_registered_loss_conforms(loss, check):
    check(loss)


class LogitKD(DistillLoss):
    """A correct loss that the broken ones below each break in one way."""

    needs = frozenset({Need.LOGITS})

    def __init__(self, ctx: LossContext, *, T: float = 4.0):
        super().__init__(ctx)
        self.T = T

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> Tensor:
        log_p_s = F.log_softmax(student.logits.float() / self.T, 1)
        log_p_t = F.log_softmax(teacher.logits.float() / self.T, 1)
        return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)


class ReadsUndeclaredFeatures(LogitKD):
    def forward(self, student, teacher, batch):
        return super().forward(student, teacher, batch) + teacher.features[-1].float().mean() * 0


class NaNOnConstantInput(LogitKD):
    def forward(self, student, teacher, batch):
        s, t = student.logits.float(), teacher.logits.float()
        return F.mse_loss((s - s.mean(1, keepdim=True)) / s.std(1, keepdim=True),
                          (t - t.mean(1, keepdim=True)) / t.std(1, keepdim=True))


class UsesGlobalRNG(LogitKD):
    def forward(self, student, teacher, batch):
        return super().forward(student, teacher, batch) * (1 + 0.1 * torch.rand(()))


class ModifiesTeacherInPlace(LogitKD):
    def forward(self, student, teacher, batch):
        teacher.logits.div_(self.T)
        return super().forward(student, teacher, batch)


class DetachesStudent(LogitKD):
    def forward(self, student, teacher, batch):
        return super().forward(Outputs(logits=student.logits.detach()), teacher, batch)


class KeepsStateOutsideStateDict(LogitKD):
    def prepare(self, prep: Preparation) -> None:
        images, _, _ = next(iter(prep.batches()))
        self.scale = prep.extract(prep.teacher, images, frozenset()).logits.std().item() + 1

    def forward(self, student, teacher, batch):
        return super().forward(student, teacher, batch) * self.scale


class TrainsTheTeacher(LogitKD):
    def prepare(self, prep: Preparation) -> None:
        prep.teacher.train()
        for images, _, _ in prep.batches():
            prep.extract(prep.teacher, images, frozenset())  # BN running statistics move


class FailsOnCrossArchitecture(DistillLoss):
    needs = frozenset({Need.FEATURES})

    def __init__(self, ctx: LossContext):
        super().__init__(ctx)
        self.connector = nn.Conv2d(ctx.student.features[-1][0], ctx.teacher.features[-1][0], 1)

    def forward(self, student, teacher, batch):
        hint = self.connector(student.features[-1])
        return F.mse_loss(hint.flatten(1), teacher.features[-1].flatten(1))  # no spatial alignment


class ReturnsPerExampleValues(LogitKD):
    def forward(self, student, teacher, batch):
        return (student.logits - teacher.logits).pow(2).mean(1)


class IgnoresTheStrongView(LogitKD):
    needs = frozenset({Need.LOGITS, Need.STRONG_VIEW})

    def forward(self, student, teacher, batch):
        if student.strong is not None:
            teacher.strong.logits.float().sum()  # looks at the teacher's strong view, never trains on the student's
        return super().forward(student, teacher, batch)


BROKEN = [  # (loss, the checks it must fail, what their reason must say)
    (ReadsUndeclaredFeatures, {"needs"}, "reads teacher.features without declaring Need.FEATURES"),
    (NaNOnConstantInput, {"finite"}, "value is nan on constant outputs"),
    (UsesGlobalRNG, {"deterministic"}, "depends on the global RNG"),
    (ModifiesTeacherInPlace, {"gradients"}, "modifies teacher.logits in place"),
    (DetachesStudent, {"gradients"}, "no gradient reaches the student"),
    (KeepsStateOutsideStateDict, {"state-dict"}, "training resumed from a checkpoint skips prepare"),
    (TrainsTheTeacher, {"prepare"}, "prepare changed the teacher"),
    (FailsOnCrossArchitecture, {"cross-architecture"}, "RuntimeError"),
    (IgnoresTheStrongView, {"strong view"}, "no gradient reaches the student's strong-view outputs"),
]


@pytest.mark.parametrize(("loss", "failing", "reason"), [pytest.param(*case, id=case[0].__name__) for case in BROKEN])
def test_a_broken_loss_fails_exactly_the_check_that_covers_its_fault(loss, failing, reason):
    results = {r.check: r for r in run_checks(loss)}
    assert {name for name, r in results.items() if not r.passed} == failing
    assert all(reason in results[name].detail for name in failing), [results[name].detail for name in failing]


def test_a_non_scalar_value_is_named_as_such():
    failed = [r for r in run_checks(ReturnsPerExampleValues) if not r.passed]
    assert len(failed) == len(CHECKS) - 2  # all but prepare and the strong view, which it does not have
    assert all("a loss returns a scalar tensor or a dict of them" in r.detail for r in failed)


def test_declared_but_unread_need_is_a_warning_not_a_failure():
    class DeclaresEmbeddingToo(LogitKD):
        needs = frozenset({Need.LOGITS, Need.EMBEDDING})

    results = {r.check: r for r in run_checks(DeclaresEmbeddingToo)}
    assert all(r.passed for r in results.values())
    assert results["needs"].status == "warn"
    assert "declares Need.EMBEDDING but never reads embedding" in results["needs"].detail


def test_checks_are_pytest_callables_for_plugin_suites():
    check = {c.name: c for c in CHECKS}
    check["finite"](LogitKD)
    with pytest.raises(ConformanceError, match="depends on the global RNG"):
        check["deterministic"](UsesGlobalRNG)
    with pytest.warns(ConformanceWarning, match="never reads"):
        check["needs"](type("Overdeclared", (LogitKD,), {"needs": frozenset(Need)}))


def test_checks_leave_the_callers_random_state_alone():
    state = torch.random.get_rng_state()
    run_checks("kd")
    assert torch.equal(state, torch.random.get_rng_state())


def test_cli_check_passes_kd_and_refuses_an_unknown_name(cli):
    result = cli("losses", "check", "kd")
    assert result.code == 0, result.out
    assert f"{len(CHECKS)} of {len(CHECKS)} checks passed" in result.out
    unknown = cli("losses", "check", "no-such-loss")
    assert unknown.code == 2 and "expected one of:" in unknown.err and "kd" in unknown.err
