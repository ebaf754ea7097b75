"""The prepared GPU run, rehearsed on CPU at toy sizes: every step writes its files named with the
device, the summary names device, torch and each command, and a failing step leaves the others running."""

import sys

import pandas as pd
import pytest
import torch

from bench.cli import perf_harness
from bench.environment import device_name
from bench.perf import gpu_figures
from bench.perf.gpu_figures import Outcome, Step, harness_flags, run_steps, summary
from bench.perf.ot import device_slug

SLUG = device_slug(torch.device("cpu"), device_name(torch.device("cpu")))


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = tmp_path_factory.mktemp("perf")
    return gpu_figures.main(["--device", "cpu", "--tiny", "--out", str(out)]), out


def test_rehearsal_writes_every_figure_named_with_the_device(rehearsal):
    code, out = rehearsal
    assert code == 0, (out / f"gpu_figures_{SLUG}.md").read_text()
    expected = [f"cuda_tests_{SLUG}.xml", f"cifar100_table_time_{SLUG}.csv", f"cifar100_table_time_{SLUG}.md",
                f"ot_{SLUG}.csv", f"ot_{SLUG}.png", f"data_path_{SLUG}.csv", f"data_path_{SLUG}.png",
                f"gpu_figures_{SLUG}.csv", f"gpu_figures_{SLUG}.md"]
    for batch in (4, 8):  # the tiny stand-ins of batch 64 and 256
        expected += [f"harness_{SLUG}_b{batch}.csv", f"harness_{SLUG}_b{batch}_losses.csv", f"harness_{SLUG}_b{batch}.png"]
    assert sorted(p.name for p in out.iterdir() if p.name in expected) == sorted(expected)
    assert (out / "ot-share" / f"harness_{SLUG}_b8_losses.csv").exists()
    assert all(SLUG in p.name for p in out.rglob("*") if p.is_file())
    outcomes = pd.read_csv(out / f"gpu_figures_{SLUG}.csv")
    assert outcomes["step"].tolist() == ["cuda-tests", "table", "harness-b4", "harness-b8", "ot", "ot-share",
                                       "data-path"]
    assert outcomes["status"].eq("ok").all()


def test_summary_names_device_torch_commands_and_skipped_flags(rehearsal):
    _, out = rehearsal
    text = (out / f"gpu_figures_{SLUG}.md").read_text()
    assert text.startswith(f"# GPU figures: {device_name(torch.device('cpu'))}")
    assert f"torch {torch.__version__}" in text
    for command in pd.read_csv(out / f"gpu_figures_{SLUG}.csv")["command"]:
        assert f"`{command}`" in text
    assert "`bench perf harness --teacher test_resnet" in text and "--ablate amp,channels-last" in text
    assert "`streams`: needs a CUDA device" in text
    assert "- Share of a batch-8 cohort step of 2 OT losses: ot-ipot " in text


def test_projection_multiplies_the_measured_times_by_the_protocol(rehearsal):
    _, out = rehearsal
    table = pd.read_csv(out / f"cifar100_table_time_{SLUG}.csv").set_index("quantity")["value"]
    steps = 64 // 4  # the tiny train set at batch 4, ragged batch dropped
    epoch_s = steps * table["cohort step"] / 1000 + table["evaluation pass"]
    assert table["cohort epoch"] == pytest.approx(epoch_s)
    assert table["cohort, 240 epochs"] == pytest.approx(240 * epoch_s / 3600)
    teacher_h = table["teacher, 240 epochs"]
    assert table["table, students"] == pytest.approx(13 * 3 * table["cohort, 240 epochs"])
    assert table["table, with teachers"] == pytest.approx(table["table, students"] + 13 * teacher_h)


def test_a_failing_or_slow_step_is_recorded_and_the_next_one_runs(tmp_path):
    python = sys.executable
    steps = [Step("boom", [python, "-c", "raise SystemExit(3)"], 30),
             Step("sleepy", [python, "-c", "import time; time.sleep(60)"], 1),
             Step("fine", [python, "-c", "print('still here')"], 30)]
    outcomes = run_steps(steps, deadline_s=120, logs=tmp_path, suffix="cpu-x")
    assert [o.status for o in outcomes] == ["failed (exit 3)", "timed out after 1 s", "ok"]
    assert outcomes[1].wall_s < 30
    assert (tmp_path / "fine_cpu-x.log").read_text() == "still here\n"
    text = summary(outcomes, {}, "a CPU", tmp_path, "cpu-x", gpu_figures._tiny_sizes())
    assert "| boom | failed (exit 3) |" in text and "| fine | ok |" in text
    assert "Last lines of boom" in text and "No figure was measured." in text


def test_steps_past_the_global_deadline_are_not_started(tmp_path):
    outcome, = run_steps([Step("late", [sys.executable, "-c", "pass"], 30)], deadline_s=5, logs=tmp_path, suffix="x")
    assert outcome == Outcome("late", "not run: the global deadline was reached", 0.0, outcome.command, "")


def test_only_the_flags_the_harness_accepts_are_asked_for(monkeypatch):
    flags, skipped = harness_flags("cuda", tiny=False)
    assert set(flags) | set(skipped) == {"amp", "channels-last", "compile", "streams", "fuse"}
    monkeypatch.setitem(perf_harness.FLAGS, "fuse", "fuse")
    assert harness_flags("cuda", tiny=False) == (["amp", "channels-last", "compile", "streams", "fuse"], {})
    monkeypatch.delitem(perf_harness.FLAGS, "fuse")
    flags, skipped = harness_flags("cpu", tiny=True)
    assert flags == ["amp", "channels-last"]
    assert skipped["fuse"].startswith("not offered by `bench perf harness --ablate`")
    assert skipped["streams"] == "needs a CUDA device"


def test_unknown_device_is_one_line_and_writes_nothing(tmp_path, capsys):
    assert gpu_figures.main(["--device", "tpu", "--out", str(tmp_path / "perf")]) == 2
    assert capsys.readouterr().err.startswith("error: unknown device 'tpu'")
    assert not (tmp_path / "perf").exists()
