"""`bench perf harness` on CPU at toy sizes: it runs all three modes, the ablations asked for, and writes its files."""

import pandas as pd


def test_harness_benchmark_smoke(cli, tmp_path):
    result = cli("perf", "harness", "--teacher", "test_resnet", "--student", "test_efficientnet",
                 "--losses", "kd,fitnet,crd", "--batch-size", "4", "--steps", "1", "--image-size", "16",
                 "--num-classes", "5", "--device", "cpu", "--ablate", "amp,channels-last", "--out", tmp_path)
    assert result.code == 0, result.err
    assert "cohort / sequential" in result.out
    frame = pd.read_csv(next(tmp_path.glob("harness_cpu-*_b4.csv")))
    assert frame["mode"].tolist() == ["model-only", "cohort", "sequential", "cohort", "cohort"]
    assert frame["variant"].tolist() == ["as asked"] * 3 + ["amp on", "channels_last on"]
    assert frame["amp"].tolist() == [False] * 3 + [True, False]
    assert frame["channels_last"].tolist() == [False] * 4 + [True]
    assert (frame["images_per_s"] > 0).all() and frame["students"].eq(3).all()
    assert len(list(tmp_path.glob("harness_*.png"))) == 1 and len(list(tmp_path.glob("harness_*.svg"))) == 1
    losses = pd.read_csv(next(tmp_path.glob("harness_cpu-*_b4_losses.csv")))
    assert losses["loss"].tolist() == ["kd", "fitnet", "crd"]


def test_harness_rejects_bad_sizes(cli, tmp_path):
    result = cli("perf", "harness", "--batch-size", "1", "--device", "cpu", "--out", tmp_path)
    assert result.code == 2 and "--batch-size must be >= 2" in result.err


def test_harness_rejects_unknown_ablation(cli, tmp_path):
    result = cli("perf", "harness", "--ablate", "amp,turbo", "--device", "cpu", "--out", tmp_path)
    assert result.code == 2
    assert "unknown --ablate flag 'turbo'; expected some of: amp, channels-last, compile, streams" in result.err
    assert not any(tmp_path.iterdir())


def test_harness_profiles_the_cohort_step_as_asked_and_each_ablation(cli, tmp_path):
    result = cli("perf", "harness", "--teacher", "test_resnet", "--student", "test_resnet", "--losses", "kd,fitnet",
                 "--batch-size", "4", "--steps", "1", "--image-size", "16", "--num-classes", "5", "--device", "cpu",
                 "--ablate", "fuse", "--profile", "--out", tmp_path)
    assert result.code == 0, result.err
    text = next(tmp_path.glob("harness_cpu-*_b4_profile.txt")).read_text()
    assert text.count("== cohort step, ") == 2 and "== cohort step, fuse on" in text
    assert "aten::convolution_backward" in text and "--profile" in text.splitlines()[0]
