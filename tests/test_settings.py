"""A setting's valid range is part of its declaration: out-of-range values are refused before any work."""

from __future__ import annotations

import math

import pytest

from bench.recipes.resolve import RECIPES, dataset_recipe, hyperparameters, resolve_loss
from bench.recipes.settings import Interval, declarations
from helpers import synthetic_run
from losses import LOSSES
from registry import ConfigError
from registry.core import BUILTIN_PROVIDER

OUT_OF_RANGE = {
    "negative weight": (["--losses", "kd", "--set", "kd.weight=-1"], "kd.weight = -1 is outside its valid range [0, inf)"),
    "negative temperature": (["--losses", "kd", "--set", "kd.T=-4"], "kd.T = -4 is outside its valid range (0, inf)"),
    "zero temperature": (["--losses", "kd", "--set", "kd.T=0"], "kd.T = 0 is outside its valid range (0, inf)"),
    "negative ce weight": (["--losses", "fitnet", "--set", "fitnet.ce_weight=-0.5"], "outside its valid range [0, inf)"),
    "a list's item": (["--losses", "mlkd", "--set", "mlkd.temperatures=[4.0, -1.0]"], "(item -1.0) is outside"),
    "open upper end": (["--losses", "dot", "--set", "dot.delta=1.0"], "dot.delta = 1.0 is outside its valid range [0, 1)"),
}


@pytest.mark.parametrize("case", OUT_OF_RANGE, ids=list(OUT_OF_RANGE))
def test_out_of_range_settings_are_refused_in_one_line(case, cli, tmp_path):
    args, message = OUT_OF_RANGE[case]
    result = cli(*synthetic_run(tmp_path, tmp_path / "cache", *args))
    assert result.code == 2 and message in result.err and result.err.count("\n") == 1
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()


def test_a_value_at_a_closed_end_is_accepted():
    spec = resolve_loss("dot", dataset_recipe("synthetic"), {"delta": 0.0, "weight": 0})
    assert spec.params["delta"] == 0.0 and spec.weight == 0.0


@pytest.mark.parametrize("text, inside, outside", [
    ("(0, inf)", [1e-12, 5.0], [0.0, -1.0, math.inf]),
    ("[0, 1)", [0.0, 0.5], [1.0, -1e-9]),
    ("[1, 3]", [1.0, 3.0], [0.999, 3.001]),
])
def test_intervals_follow_their_brackets(text, inside, outside):
    interval = Interval.parse(text, "test")
    assert all(v in interval for v in inside) and not any(v in interval for v in outside)
    assert str(interval) == text


@pytest.mark.parametrize("text", ["0, 1", "[1, 0]", "(a, 1)", "[0; 1]"])
def test_a_malformed_interval_is_one_line(text):
    with pytest.raises(ConfigError, match="valid = "):
        Interval.parse(text, "test")


@pytest.mark.parametrize("name", [entry.name for entry in LOSSES if entry.provider == BUILTIN_PROVIDER])
def test_every_builtin_loss_declares_its_settings(name):
    """settings.toml names only the loss's own settings, and every recipe's value lies in its range."""
    declared = declarations()[name]
    assert set(declared) <= {"weight", "ce_weight", *hyperparameters(LOSSES.get(name))}
    for dataset in (p.stem for p in (RECIPES / "datasets").glob("*.toml")):
        resolve_loss(name, dataset_recipe(dataset), {})  # raises when a recipe value is out of range
