"""The losses 2024-2026 papers compare against train in one cohort, on a same- and a cross-architecture pair."""

import pytest

from helpers import read_runs, synthetic_run

MODERN = ["kd-ls", "dkd-ls", "nkd", "ttm", "wttm", "mlkd", "mlkd-ls", "ctkd", "reviewkd", "srrl", "simkd", "dot",
          "ctkd-ls", "dkd-ctkd"]

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("pair", ["test_resnet-test_resnet", "test_resnet-test_efficientnet"])
def test_one_cohort_with_every_modern_loss(pair, tmp_path, teacher_cache, cli):
    result = cli(*synthetic_run(tmp_path, teacher_cache, "--pair", pair, "--losses", ",".join(MODERN),
                                "--epochs", "1"))
    assert result.code == 0, result.err
    runs = read_runs(tmp_path / "results")
    assert sorted(runs["loss"]) == sorted(MODERN)
    assert not runs["diverged"].any() and runs["last_top1"].between(0, 100).all()
