"""What a verdict claims must be what was computed: teachers, the correction's family, τ's interval, marks.

References: Kendall's τ of a bivariate normal with correlation ρ is (2/π)·arcsin ρ (Greiner's relation);
Benjamini–Hochberg's step-up written out; each loss's p from the df=2 closed form of Student's t.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from bench.cli import main
from bench.report import stats
from bench.report.aggregate import leaderboard
from bench.report.display import cells, labelled, summary_lines
from bench.report.protocols import protocol_comparisons
from bench.report.runs import load_runs
from bench.training.teacher import weights_fingerprint

VANILLA = [70.0, 71.0, 72.0]
# eight losses with small, steady gains over vanilla: each alone is significant, Holm over all eight is not
GAINS = {f"l{i}": [1.0 + 0.1 * i, 1.6 + 0.1 * i, 1.3 + 0.1 * i] for i in range(8)}


def p_df2(deltas):
    d = np.asarray(deltas, float)
    t = d.mean() / (d.std(ddof=1) / math.sqrt(3))
    return 1 - abs(t) / math.sqrt(2 + t * t)


def board(rows, write_runs, **options) -> pd.DataFrame:
    return leaderboard(load_runs(write_runs(rows) / "toy" / "runs.csv"), **options).set_index("loss")


@pytest.fixture(scope="module")
def gain_rows(run_row):
    rows = [run_row("vanilla", seed, best) for seed, best in enumerate(VANILLA)]
    rows += [run_row(loss, seed, base + gain) for loss, gains in GAINS.items()
             for seed, (base, gain) in enumerate(zip(VANILLA, gains))]
    return rows


def test_a_display_filter_does_not_change_a_mark(gain_rows, write_runs):
    """Holm's family is the comparison's losses, not the ones shown: showing two must not make l0 significant."""
    full = board(gain_rows, write_runs, baselines=("vanilla",))
    shown = board(gain_rows, write_runs, losses=["vanilla", "l0"], baselines=("vanilla",))
    raw = p_df2(GAINS["l0"])
    assert raw < 0.05 and min(1.0, 8 * raw) > 0.05  # l0 alone is significant; so is not the smallest of 8 under Holm
    assert full.loc["l0", "vs_vanilla"] == shown.loc["l0", "vs_vanilla"] == "not significant"
    assert shown.loc["l0", "p_holm_vanilla"] == pytest.approx(full.loc["l0", "p_holm_vanilla"])
    assert shown.loc["l0", "family_vanilla"] == 8
    assert shown.loc["l0", "rank"] == full.loc["l0", "rank"]  # ranked among the comparison's losses too
    [line] = summary_lines(labelled(shown.reset_index()))
    assert "after Holm over 8 losses at α = 0.05: no difference is significant." in line


def test_benjamini_hochberg_on_request_with_raw_p_beside_it(gain_rows, write_runs):
    table = board(gain_rows, write_runs, baselines=("vanilla",), correction="bh")
    losses = list(GAINS)
    raw = np.array([p_df2(GAINS[loss]) for loss in losses])
    order = np.argsort(raw)[::-1]  # step-up: from the largest p down, q_(i) = min over j ≥ i of m·p_(j)/j
    expected, running = np.empty(len(raw)), 1.0
    for rank, index in zip(range(len(raw), 0, -1), order):
        running = min(running, len(raw) * raw[index] / rank)
        expected[index] = running
    assert table.loc[losses, "p_raw_vanilla"].to_numpy(float) == pytest.approx(raw)
    assert table.loc[losses, "p_bh_vanilla"].to_numpy(float) == pytest.approx(expected)
    assert "p_holm_vanilla" not in table
    assert cells(labelled(table.reset_index())).columns.str.contains(r"vs vanilla \(bh\)").any()


def test_an_unknown_correction_is_one_line_and_writes_nothing(gain_rows, write_runs, capsys):
    root = write_runs(gain_rows)
    before = sorted(root.rglob("*"))
    assert main(["report", "--results-dir", str(root), "--correction", "bonferroni"]) == 2
    assert capsys.readouterr().err == "error: --correction expects one of: holm, bh; got 'bonferroni'\n"
    assert sorted(root.rglob("*")) == before


def test_runs_against_different_teachers_are_never_paired(run_row, write_runs):
    """Two machines trained their own teachers for seeds 0-2: kd's runs saw the other teachers than vanilla's."""
    rows = [run_row("vanilla", seed, best, teacher_top1=t, device="A") for seed, (best, t) in
            enumerate(zip(VANILLA, [81.75, 81.36, 72.45]))]
    rows += [run_row("kd", seed, best + 2, teacher_top1=t, device="B") for seed, (best, t) in
             enumerate(zip(VANILLA, [80.47, 83.09, 78.84]))]
    rows += [run_row("at", seed, best + 1, teacher_top1=t, device="B") for seed, (best, t) in
             enumerate(zip(VANILLA, [80.47, 83.09, 78.84]))]
    table = board(rows, write_runs)
    assert table["teachers"].nunique() == 2  # the mixed group is split in two comparisons
    assert table.loc["kd", "teachers"] == table.loc["at", "teachers"] != table.loc["vanilla", "teachers"]
    assert table["delta_vanilla"].isna().all()  # nothing paired across teachers
    assert table.loc["at", "delta_kd"] == pytest.approx(-1.0)  # same teachers: paired
    assert table.loc["kd", "teacher_top1_by_seed"] == "80.47 / 83.09 / 78.84"  # never a mean no teacher had
    shown = labelled(table.reset_index())
    assert shown["setting"].str.contains("teachers").all()


def test_a_recorded_fingerprint_decides_over_name_and_accuracy(run_row, write_runs):
    rows = [run_row("vanilla", seed, best, teacher_fingerprint="aaaa") for seed, best in enumerate(VANILLA)]
    rows += [run_row("kd", seed, best + 2, teacher_fingerprint="bbbb") for seed, best in enumerate(VANILLA)]
    table = board(rows, write_runs)
    assert table["teachers"].nunique() == 2 and table["delta_vanilla"].isna().all()


def test_an_older_row_takes_the_one_fingerprint_recorded_for_its_teacher(run_row, write_runs):
    """Rows from before the fingerprint pair with newer rows of the same teacher (name, device, top-1/5)."""
    rows = [run_row("vanilla", seed, best) for seed, best in enumerate(VANILLA)]
    rows += [run_row("kd", seed, best + 2, teacher_fingerprint="aaaa") for seed, best in enumerate(VANILLA)]
    table = board(rows, write_runs)
    assert table["teachers"].nunique() == 1 and table.loc["kd", "delta_vanilla"] == pytest.approx(2.0)
    rows += [run_row("at", seed, best + 1, teacher_fingerprint="bbbb") for seed, best in enumerate(VANILLA)]
    table = board(rows, write_runs)  # two fingerprints for one older identity: which it was is unknown
    assert table.loc["kd", "teachers"] != table.loc["vanilla", "teachers"] != table.loc["at", "teachers"]
    assert table["delta_vanilla"].drop("vanilla").isna().all()


def test_the_fingerprint_is_of_the_weights():
    torch.manual_seed(0)
    first, same = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    same.load_state_dict(first.state_dict())
    other = torch.nn.Linear(3, 2)
    assert weights_fingerprint(first) == weights_fingerprint(same) != weights_fingerprint(other)
    with torch.no_grad():
        same.bias[0] += 1e-6
    assert weights_fingerprint(same) != weights_fingerprint(first)


def test_one_epoch_shows_one_mark(run_row, write_runs):
    rows = [run_row("vanilla", seed, best, best, epochs=1) for seed, best in enumerate(VANILLA)]
    rows += [run_row("kd", seed, best + d, best + d, epochs=1) for seed, (best, d) in enumerate(zip(VANILLA, [5, 5.1, 4.9]))]
    text = cells(labelled(board(rows, write_runs).reset_index())).set_index("loss")
    assert text.loc["kd", "vs vanilla (holm)"] == "▲"  # best = last: the same test is not shown twice


def simulated_protocols(rng, losses: int, rho: float, seeds: int = 3, noise: float = 0.05) -> tuple:
    """Two protocols' runs: each loss's true score under both is bivariate normal with correlation ρ."""
    true = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=losses)
    frames = []
    for side in (0, 1):
        frames.append(pd.DataFrame([{"loss": f"l{i}", "seed": seed, "selected_top1": true[i, side] + noise * rng.normal()}
                                    for i in range(losses) for seed in range(seeds)]))
    return frames


def test_tau_interval_covers_a_known_tau_on_simulated_rankings(monkeypatch):
    """A 95% interval for τ over the population of losses must cover (2/π)·arcsin ρ about 95% of the time."""
    monkeypatch.setattr(stats, "RESAMPLES", 399)
    rng = np.random.default_rng(1)
    rho, trials = 0.6, 40
    known = 2 / math.pi * math.asin(rho)
    covered = 0
    for _ in range(trials):
        result = stats.protocol_agreement(*simulated_protocols(rng, losses=25, rho=rho))
        covered += result.low <= known <= result.high
    assert covered / trials >= 0.85  # 95% nominal; 40 trials: 0.85 is about 3 binomial SDs below


def test_tau_compares_the_same_settings_of_a_loss(run_row, write_runs):
    """A loss re-run under fast with the settings converged uses enters τ with those, not the superseded ones."""
    losses = {"vanilla": (70, 80), "kd": (72, 82), "at": (71, 81)}
    rows = [run_row(loss, seed, fast + 0.1 * seed, protocol="fast", epochs=1) for loss, (fast, _) in losses.items()
            for seed in (0, 1)]
    rows += [run_row(loss, seed, slow + 0.1 * seed, protocol="converged", epochs=1, hparams='{"T": 4}')
             for loss, (_, slow) in losses.items() for seed in (0, 1)]
    # the superseded fast setting of at sorts first by hash and would rank it top; the current one matches converged
    rows += [run_row("at", seed, 99.0, protocol="fast", epochs=1, recipe_hash="0-old-at", run_id=f"old-at-{seed}",
                     hparams='{"T": 2}') for seed in (0, 1)]
    rows = [{**row, "hparams": '{"T": 4}'} if row["loss"] == "at" and row["recipe_hash"] != "0-old-at" else row
            for row in rows]
    runs = load_runs(write_runs(rows) / "toy" / "runs.csv")
    [comparison] = protocol_comparisons("toy", runs, "fast", "converged")
    assert comparison.agreement.means[0]["at"] == pytest.approx(71.05)
