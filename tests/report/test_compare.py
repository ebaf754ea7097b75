"""``bench report --compare`` / ``--compare-protocols`` / ``--baseline`` and the console table's fit, via the CLI."""

from __future__ import annotations

import io
import math

import pytest
from rich.console import Console

from bench.cli import main
from bench.report import build_report

VANILLA = [70.0, 71.0, 72.0, 73.0]
KD = [72.0, 74.0, 73.0]  # seed 3 missing


@pytest.fixture(scope="module")
def results(run_row, write_runs):
    rows = [run_row("vanilla", seed, best) for seed, best in enumerate(VANILLA)]
    rows += [run_row("kd", seed, best) for seed, best in enumerate(KD)]
    rows += [run_row("at", 0, 71.0), run_row("at", 1, 80.0, diverged=True), run_row("at", 2, 74.0)]
    rows += [run_row(loss, seed, 60.0 + i + 0.3 * seed * (i + 1), protocol="fast", epochs=1)
             for i, loss in enumerate(("vanilla", "at", "kd")) for seed in (0, 1)]
    return write_runs(rows)


@pytest.fixture(autouse=True)
def wide(monkeypatch):
    """Printed sentences on one line each, to be found whole (piped output wraps at 100 columns otherwise)."""
    monkeypatch.setenv("COLUMNS", "250")


def report(results, *options: str) -> int:
    return main(["report", "--results-dir", str(results), *options])


def test_compare_prints_every_seed_and_the_test(results, capsys):
    before = sorted(results.rglob("*"))
    assert report(results, "--compare", "kd,vanilla", "--pair", "resnet32x4-resnet8x4") == 0
    out = capsys.readouterr().out
    assert sorted(results.rglob("*")) == before  # prints, writes nothing
    deltas = [k - v for k, v in zip(KD, VANILLA)]  # 2, 3, 1
    for delta in deltas:
        assert f"+{delta:.2f}" in out
    assert "missing" in out  # kd has no seed 3
    mean, sd = 2.0, 1.0
    t = mean / (sd / math.sqrt(3))
    p = 1 - t / math.sqrt(2 + t * t)  # Student's t with 2 degrees of freedom, two-sided
    half = math.sqrt(2 * 0.95**2 / (1 - 0.95**2)) * sd / math.sqrt(3)
    assert f"Δ = +2.00, 95% CI [{mean - half:+.2f}, {mean + half:+.2f}], paired t-test p = {p:.3g}" in out
    assert "Wilcoxon needs ≥ 6 seeds (n = 3 shared seeds" in out
    assert "34 seeds (" in out and "would resolve Δ = 0.5" in out  # sd of the differences is 1


def test_the_aliases_bench_run_accepts_name_their_losses(results, capsys):
    """``kl`` is what ``bench run --losses kl`` records as ``kd``: --compare, --losses and --baseline read it so."""
    by_name = report(results, "--compare", "kd,vanilla", "--pair", "resnet32x4-resnet8x4"), capsys.readouterr().out
    by_alias = report(results, "--compare", "kl,vanilla", "--pair", "resnet32x4-resnet8x4"), capsys.readouterr().out
    assert by_alias == by_name and by_name[0] == 0
    assert report(results, "--losses", "kl,vanilla", "--baseline", "kl") == 0
    assert "no results for" not in capsys.readouterr().err


def test_compare_counts_diverged_and_refuses_a_test_on_one_seed(results, capsys):
    assert report(results, "--compare", "at,kd") == 0
    out = capsys.readouterr().out
    assert "diverged" in out and "at: 1 diverged run(s) excluded" in out
    assert "1 shared seed: no test" not in out  # standard: seeds 0 and 2 are shared
    fast = out[out.index("(fast, 1 ep)"):]
    assert "p =" in fast  # two seeds under fast as well


def test_compare_protocols_prints_tau(results, capsys):
    assert report(results, "--compare-protocols", "fast,standard") == 0
    out = capsys.readouterr().out
    # only the seeds every loss finished count: standard's 0 and 2 (at's seed 1 diverged, kd has no seed 3),
    # where kd (72.5) ties at (72.5) above vanilla (71); fast has kd > at > vanilla: τ-b = 2 / sqrt(6)
    assert "Kendall's τ = +0.82 over 3 losses, no interval under 5 losses" in out
    assert "seeds 2 / 2." in out


@pytest.mark.parametrize(("options", "message"), [
    (("--compare", "kd"), "--compare expects two different losses separated by a comma, e.g. kd,vanilla; got 'kd'"),
    (("--compare", "kd,dkd"), "no results for loss 'dkd'; expected one of: at, kd, vanilla"),
    (("--compare-protocols", "fast,long"), "no results for protocol 'long'; expected one of: fast, standard"),
    (("--baseline", "dkd"), "no results for baseline 'dkd'; expected one or more of: at, kd, vanilla"),
])
def test_bad_comparison_is_one_line_and_writes_nothing(results, capsys, options, message):
    before = sorted(results.rglob("*"))
    assert report(results, *options) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert sorted(results.rglob("*")) == before


def test_baseline_option_chooses_the_reference(results):
    import pandas as pd

    assert report(results, "--baseline", "kd") == 0
    table = pd.read_csv(results / "toy" / "leaderboard.csv")
    assert "delta_kd" in table and "delta_vanilla" not in table
    standard = table[table["protocol"] == "standard"].set_index("loss")
    assert standard.loc["vanilla", "delta_kd"] == pytest.approx(-2.0)


@pytest.mark.parametrize("width", [80, 100])
def test_console_table_fits_a_narrow_terminal(results, width):
    out = io.StringIO()
    build_report(results, console=Console(file=out, width=width))
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= width
    assert "…" not in out.getvalue()  # nothing cut
    assert f"not shown at {width} columns:" in out.getvalue()
    header = next(line for line in lines if line.lstrip().startswith("#"))
    assert "vs vanilla" in header and "vs kd" in header  # the verdicts are what stays


def test_console_table_keeps_every_column_when_wide(results):
    out = io.StringIO()
    build_report(results, console=Console(file=out, width=250))
    assert "not shown" not in out.getvalue() and "95% CI vanilla" in out.getvalue()


def test_the_report_draws_one_protocols_ranking_against_the_other(results):
    build_report(results, console=False)
    assert (results / "toy" / "plots" / "resnet32x4-resnet8x4_fast_vs_standard_ranks.png").is_file()
    notes = (results / "toy" / "leaderboard.md").read_text()
    assert ("Protocols · resnet32x4-resnet8x4, fast (1 ep) vs standard (3 ep): Kendall's τ = +0.82 over 3 losses, "
            "no interval under 5 losses") in notes
    assert "plots/resnet32x4-resnet8x4_fast_vs_standard_ranks.png" in notes


def test_no_ranking_figure_without_seeds_to_resample(run_row, write_runs):
    rows = [run_row(loss, seed, 70.0 + i + seed) for i, loss in enumerate(("vanilla", "at", "kd")) for seed in (0, 1)]
    rows += [run_row(loss, 0, 60.0 + i, protocol="fast", epochs=1) for i, loss in enumerate(("vanilla", "at", "kd"))]
    results = write_runs(rows)
    build_report(results, console=False)
    assert not list((results / "toy" / "plots").glob("*_ranks.png"))
    assert "Protocols ·" not in (results / "toy" / "leaderboard.md").read_text()


def test_a_seed_only_some_losses_finished_gives_no_interval(run_row, write_runs, capsys):
    rows = [run_row(loss, seed, 70.0 + i + seed) for i, loss in enumerate(("vanilla", "at", "kd")) for seed in (0, 1)]
    rows += [run_row(loss, 0, 60.0 + i, protocol="fast", epochs=1) for i, loss in enumerate(("vanilla", "at", "kd"))]
    rows += [run_row("vanilla", 1, 61.0, protocol="fast", epochs=1)]  # seed 1 of fast: vanilla alone
    results = write_runs(rows)
    assert report(results, "--compare-protocols", "fast,standard") == 0
    assert "fast (1 ep) n/a (one seed), standard (3 ep) +1.00; seeds 1 / 2." in capsys.readouterr().out


def test_a_strong_view_budget_of_a_protocol_gets_its_own_ranking_figure(run_row, write_runs):
    """Two budgets of one protocol (one view, strong view) against another protocol: two figures, both named."""
    losses = ("vanilla", "at", "kd")
    rows = [run_row(loss, seed, 70.0 + i + seed, protocol="fast", epochs=1)
            for i, loss in enumerate(losses) for seed in (0, 1)]
    for strong in (False, True):
        rows += [run_row(loss, seed, 80.0 + i - seed + 3 * strong, strong_view=strong,
                         recipe_hash=f"{loss}-{strong}", run_id=f"{loss}-{strong}-{seed}")
                 for i, loss in enumerate(losses) for seed in (0, 1)]
    results = write_runs(rows)
    build_report(results, console=False)
    plots = results / "toy" / "plots"
    assert (plots / "resnet32x4-resnet8x4_fast_vs_standard_ranks.png").is_file()
    assert (plots / "resnet32x4-resnet8x4_fast_vs_standard_strongview_ranks.png").is_file()
    notes = (results / "toy" / "leaderboard.md").read_text()
    assert "fast (1 ep) vs standard (3 ep, strong view): Kendall's τ" in notes
    assert "| standard, 3 ep, strong view |" in notes


def test_tuned_runs_are_ranked_against_the_untuned_ones_of_their_budget(run_row, write_runs):
    """Untuned kd > at > vanilla, tuned at > kd > vanilla: one discordant pair of three, τ = +1/3."""
    untuned = {"vanilla": 70.0, "at": 71.0, "kd": 72.0}
    tuned = {"vanilla": 70.0, "at": 73.0, "kd": 72.0}
    rows = [run_row(loss, seed, best + seed) for loss, best in untuned.items() for seed in (0, 1)]
    rows += [run_row(loss, seed, best + seed, tuned="1f2e3d4c5b6a", val_size=6000, val_top1=best + seed,
                     selected_epoch=2, selected_top1=best + seed, selected_top5=best + seed + 20,
                     recipe_hash=f"{loss}-tuned", run_id=f"{loss}-tuned-{seed}")
             for loss, best in tuned.items() for seed in (0, 1)]
    results = write_runs(rows)
    build_report(results, console=False)
    notes = (results / "toy" / "leaderboard.md").read_text()
    assert ("Tuning · resnet32x4-resnet8x4, standard (3 ep, untuned, no validation split) vs "
            "standard (3 ep, tuned 1f2e3d4, validation 6000): Kendall's τ = +0.33 over 3 losses") in notes
    assert len(list((results / "toy" / "plots").glob("*_untuned*_vs_*_tuned*1f2e3d4*_ranks.png"))) == 1


def test_protocols_compare_budgets_of_one_settings_source_and_each_figure_has_its_own_name(run_row, write_runs):
    """An untuned and a tuned board of one protocol on a validation split of 6000, an untuned board of it
    without the split, and a cheaper protocol without it: fast is compared with the two untuned boards,
    each side naming its split where they differ, never with the tuned one; the tuned board with the
    untuned one of its split. No two figures share a file (two once did, and the report stopped while
    moving them into place)."""
    losses = ("vanilla", "at", "kd")
    rows = [run_row(loss, seed, 60.0 + i + seed, protocol="fast", epochs=1)
            for i, loss in enumerate(losses) for seed in (0, 1)]
    rows += [run_row(loss, seed, 70.0 + i + seed) for i, loss in enumerate(losses) for seed in (0, 1)]
    for search, best in (("", lambda i: 70.0 + i), ("1f2e3d4c5b6a", lambda i: 72.0 - i)):
        rows += [run_row(loss, seed, best(i) + seed, tuned=search, val_size=6000, val_top1=best(i) + seed,
                         selected_epoch=2, selected_top1=best(i) + seed, selected_top5=95.0,
                         recipe_hash=f"{loss}-{search}", run_id=f"{loss}-{search}-6000-{seed}")
                 for i, loss in enumerate(losses) for seed in (0, 1)]
    results = write_runs(rows)
    build_report(results, console=False)
    notes = [line for line in (results / "toy" / "leaderboard.md").read_text().splitlines() if "Kendall's τ" in line]
    assert [line.split(": Kendall's τ = ")[0] + " " + line.split(": Kendall's τ = ")[1][:5] for line in notes] == [
        "Protocols · resnet32x4-resnet8x4, fast (1 ep) vs standard (3 ep) +1.00",
        "Protocols · resnet32x4-resnet8x4, fast (1 ep, no validation split) vs standard (3 ep, validation 6000) +1.00",
        "Tuning · resnet32x4-resnet8x4, standard (3 ep, untuned) vs standard (3 ep, tuned 1f2e3d4) -1.00",
    ]
    figures = sorted(p.name for p in (results / "toy" / "plots").glob("*_ranks.png"))
    assert figures == ["resnet32x4-resnet8x4_fast_novalidationsplit_vs_standard_validation6000_ranks.png",
                       "resnet32x4-resnet8x4_fast_vs_standard_ranks.png",
                       "resnet32x4-resnet8x4_standard_untuned_vs_standard_tuned1f2e3d4_ranks.png"]
