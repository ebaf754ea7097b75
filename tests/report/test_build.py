"""``build_report`` end to end on a small runs.csv: every file, and how diverged runs and single seeds read."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from rich.console import Console

from bench.report import build_report

PAIRS = ("resnet32x4-resnet8x4", "wrn_40_2-wrn_16_2")


@pytest.fixture(scope="module")
def results(run_row, write_runs):
    """Two pairs; vanilla and kd with 2 seeds, ``at`` with one of 2 seeds diverged, ``sp`` with a single seed."""
    rows = []
    for pair in PAIRS:
        rows += [run_row("vanilla", seed, 70.0 + seed, pair=pair) for seed in (0, 1)]
        rows += [run_row("kd", seed, 72.0 + seed, pair=pair, s_per_epoch=12.0) for seed in (0, 1)]
        rows += [run_row("at", 0, 71.0, pair=pair), run_row("at", 1, 90.0, pair=pair, diverged=True)]
        rows += [run_row("sp", 0, 74.0, pair=pair)]
    return write_runs(rows)


@pytest.fixture(scope="module")
def report(results):
    out = io.StringIO()
    written = build_report(results, console=Console(file=out, width=160))
    return results / "toy", written, out.getvalue()


def test_every_output_file_is_written(report):
    directory, written, _ = report
    plots = directory / "plots"
    expected = {directory / "leaderboard.csv", directory / "leaderboard.md", directory / "report.html"}
    for pair in PAIRS:
        for kind in ("forest", "accuracy", "curves", "cost"):
            expected |= {plots / f"{pair}_standard_3ep_{kind}.png", plots / f"{pair}_standard_3ep_{kind}.svg"}
    expected |= {plots / "delta_vs_vanilla.png", plots / "delta_vs_vanilla.svg"}
    expected |= {plots / "critical_difference_standard_3ep.png", plots / "critical_difference_standard_3ep.svg"}
    assert set(written) == expected
    assert all(path.stat().st_size > 0 for path in written)
    assert (plots / "delta_vs_vanilla.png").read_bytes().startswith(b"\x89PNG")
    assert "<svg" in (plots / "delta_vs_vanilla.svg").read_text()


def test_csv_has_one_row_per_pair_and_loss_sorted_by_rank(report):
    table = pd.read_csv(report[0] / "leaderboard.csv")
    assert len(table) == len(PAIRS) * 4
    first = table[table["pair"] == PAIRS[0]]
    assert first["loss"].to_list() == ["sp", "kd", "at", "vanilla"]  # 74, 72.5, 71, 70.5
    assert first["rank"].to_list() == [1, 2, 3, 4]
    assert "published_top1" not in table  # no published table for this dataset


def test_markdown_marks_best_diverged_and_single_seed(report):
    text = (report[0] / "leaderboard.md").read_text()
    assert text.startswith("# toy leaderboard")
    assert "`bench run --dataset toy --seeds 0,1,2`" in text and "NVIDIA H100 80GB HBM3" in text
    sp = next(line for line in text.splitlines() if f"| {PAIRS[0]} |" in line and "sp" in line)
    assert "**sp**" in sp and "**74.00 ± n/a**" in sp  # best in bold; one seed: n/a, never 0
    at = next(line for line in text.splitlines() if f"| {PAIRS[0]} |" in line and "| at |" in line)
    assert "1 (+1 diverged)" in at and "71.00 ± n/a" in at  # the diverged 90.0 is not in the mean


def test_html_is_one_self_contained_page(report):
    page = (report[0] / "report.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == 10  # 4 figures per pair + heatmap + CD diagram
    assert page.count("<figcaption>") == 10 and "<figcaption> " not in page  # a caption under every figure
    assert "http://" not in page and "https://" not in page
    assert "<code>bench run --dataset toy --seeds 0,1,2</code>" in page


def test_console_prints_a_table_per_pair(report):
    printed = report[2]
    assert all(f"toy · {pair} (standard, 3 ep)" in printed for pair in PAIRS)
    assert "74.00 ± n/a" in printed


def test_one_pair_draws_no_heatmap(run_row, write_runs):
    root = write_runs([run_row("vanilla", 0, 70.0), run_row("kd", 0, 71.0)])
    written = build_report(root, console=False)
    assert not any(path.stem == "delta_vs_vanilla" for path in written)


def test_the_page_opens_with_a_summary_of_what_is_real(report):
    page = (report[0] / "report.html").read_text()
    summary = page[page.index("<h2>Summary</h2>"):page.index("<h2>Leaderboard</h2>")]
    assert f"{PAIRS[0]} (standard, 3 ep): best sp at 74.00% (1 seed, 10.00 s/epoch)." in summary
    assert "No test against vanilla: no loss has two seeds paired with it" in summary  # kd's Δ is +2 on both seeds


def test_one_epoch_draws_no_training_curves(run_row, write_runs):
    rows = [run_row(loss, seed, 70.0 + i + seed, epochs=1, protocol="fast") for i, loss in enumerate(("vanilla", "kd"))
            for seed in (0, 1)]
    written = build_report(write_runs(rows), console=False)
    assert not any(path.stem.endswith("_curves") for path in written)
    assert any(path.stem.endswith("_accuracy") for path in written)


def test_the_pareto_front_is_what_no_other_point_beats():
    import numpy as np

    from bench.report.plots import pareto_front

    cost = np.array([10.0, 12.0, 11.0, 30.0, 12.0])
    accuracy = np.array([80.0, 85.0, 79.0, 86.0, 84.0])
    beaten = [any(cost[j] <= cost[i] and accuracy[j] >= accuracy[i] and (cost[j], accuracy[j]) != (cost[i], accuracy[i])
                  for j in range(len(cost))) for i in range(len(cost))]
    assert pareto_front(cost, accuracy).tolist() == [not b for b in beaten] == [True, True, False, True, False]


def test_a_leaderboard_of_forty_losses_draws_its_figures_without_layout_warnings(run_row, write_runs):
    """A legend of 41 entries beside the training curves once collapsed their axes (matplotlib then warns
    "constrained_layout not applied" on every report)."""
    import warnings

    root = write_runs([run_row(f"loss-{i}", seed, 60.0 + i * 0.1 + seed) for i in range(41) for seed in (0, 1)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_report(root, console=False)


def test_piped_leaderboard_fits_100_columns_with_a_short_footer(run_row, write_runs, cli, monkeypatch):
    """Runs from four commands (a sweep's cohorts): the terminal's footer counts them, leaderboard.md lists them."""
    monkeypatch.delenv("COLUMNS", raising=False)
    rows = [{**run_row(loss, seed, 70.0 + seed + (loss == "kd")), "command": f"bench run --seeds {seed} --losses {loss}"}
            for loss in ("vanilla", "kd") for seed in (0, 1)]
    root = write_runs(rows)
    result = cli("report", "--results-dir", root)
    assert result.code == 0, result.err
    assert max(map(len, result.out.splitlines())) <= 100
    printed = " ".join(result.out.split())
    assert "4 runs from 4 commands (listed in leaderboard.md)" in printed and "--seeds 1" not in printed
    assert all(row["command"] in (root / "toy" / "leaderboard.md").read_text() for row in rows)
