"""Variants of one loss in one comparison are told apart by the settings they differ in, not by hashes."""

from __future__ import annotations

from bench.report.aggregate import leaderboard
from bench.report.display import labelled
from bench.report.runs import load_runs


def _labels(rows, write_runs) -> list[str]:
    return sorted(labelled(leaderboard(load_runs(write_runs(rows) / "toy" / "runs.csv")))["label"])


def test_variants_are_labelled_by_their_differing_settings(run_row, write_runs):
    rows = [run_row("vanilla", 0, 70.0),
            run_row("kd", 0, 72.0, recipe_hash="aaaaaaaaaa", run_id="a0", hparams='{"T": 4.0}', weight=0.9),
            run_row("kd", 0, 73.0, recipe_hash="bbbbbbbbbb", run_id="b0", hparams='{"T": 2.0}', weight=0.9),
            run_row("kd", 0, 71.0, recipe_hash="cccccccccc", run_id="c0", hparams='{"T": 2.0}', weight=0.3)]
    assert _labels(rows, write_runs) == ["kd weight=0.3 T=2", "kd weight=0.9 T=2", "kd weight=0.9 T=4", "vanilla"]


def test_variants_with_equal_settings_keep_their_hash(run_row, write_runs):
    rows = [run_row("kd", 0, 72.0, recipe_hash="aaaaaaaaaa", run_id="a0", hparams='{"T": 4.0}'),
            run_row("kd", 0, 73.0, recipe_hash="bbbbbbbbbb", run_id="b0", hparams='{"T": 4.0}')]
    assert _labels(rows, write_runs) == ["kd [aaaaaaa]", "kd [bbbbbbb]"]


def test_a_single_recipe_is_labelled_by_its_name(run_row, write_runs):
    assert _labels([run_row("kd", 0, 72.0, hparams='{"T": 4.0}')], write_runs) == ["kd"]
