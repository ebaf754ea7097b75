"""`bench perf harness` on CPU at toy sizes: it runs all three modes and writes its files."""

import pandas as pd


def test_harness_benchmark_smoke(cli, tmp_path):
    result = cli("perf", "harness", "--teacher", "test_resnet", "--student", "test_efficientnet",
                 "--losses", "kd,fitnet,crd", "--batch-size", "4", "--steps", "1", "--image-size", "16",
                 "--num-classes", "5", "--device", "cpu", "--out", tmp_path)
    assert result.code == 0, result.err
    assert "cohort / sequential" in result.out
    frame = pd.read_csv(next(p for p in tmp_path.glob("harness_cpu-*.csv") if not p.name.endswith("_losses.csv")))
    assert frame["mode"].tolist() == ["model-only", "cohort", "sequential"]
    assert (frame["images_per_s"] > 0).all() and frame["students"].eq(3).all()
    assert len(list(tmp_path.glob("harness_*.png"))) == 1 and len(list(tmp_path.glob("harness_*.svg"))) == 1
    losses = pd.read_csv(next(tmp_path.glob("harness_*_losses.csv")))
    assert losses["loss"].tolist() == ["kd", "fitnet", "crd"]


def test_harness_rejects_bad_sizes(cli, tmp_path):
    result = cli("perf", "harness", "--batch-size", "1", "--device", "cpu", "--out", tmp_path)
    assert result.code == 2 and "--batch-size must be >= 2" in result.err
