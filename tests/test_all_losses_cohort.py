"""Every registered built-in loss trains in one cohort, on a same- and a cross-architecture pair."""

from __future__ import annotations

import pytest

from helpers import read_runs, synthetic_run
from losses import LOSSES, Need

# a loss that needs pre-activation features trains on CIFAR zoo pairs (tests/losses/test_modern_ofd.py)
BUILT_INS = [entry.name for entry in LOSSES if entry.provider == "distillbench"
             and Need.PREACT_FEATURES not in LOSSES.get(entry.name).needs]
SHORT_INIT = [f"--set={name}.init_epochs=2" for name in ("ab", "ft", "fsp")]

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("pair", ["test_resnet-test_resnet", "test_resnet-test_efficientnet"])
def test_one_cohort_with_every_loss(pair, tmp_path, teacher_cache, cli):
    result = cli(*synthetic_run(tmp_path, teacher_cache, "--pair", pair, "--losses", ",".join(BUILT_INS),
                                "--epochs", "1", *SHORT_INIT))
    assert result.code == 0, result.err
    runs = read_runs(tmp_path / "results")
    assert sorted(runs["loss"]) == sorted(BUILT_INS)
    assert not runs["diverged"].any() and runs["last_top1"].between(0, 100).all()
