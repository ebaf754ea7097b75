"""Validation of numeric hyperparameters, so a bad recipe value fails in one line before training."""

from __future__ import annotations

from registry import ConfigError


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    return float(value)


def positive(name: str, value: object) -> float:
    """A number > 0 (temperatures, margins, weights inside a loss)."""
    number = _number(name, value)
    if not number > 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")
    return number


def non_negative(name: str, value: object) -> float:
    number = _number(name, value)
    if not number >= 0:
        raise ConfigError(f"{name} must be >= 0, got {value!r}")
    return number


def fraction(name: str, value: object) -> float:
    """A number in [0, 1) (momenta)."""
    number = _number(name, value)
    if not 0 <= number < 1:
        raise ConfigError(f"{name} must be in [0, 1), got {value!r}")
    return number


def unit_interval(name: str, value: object) -> float:
    """A number in [0, 1] (a share of a run)."""
    number = _number(name, value)
    if not 0 <= number <= 1:
        raise ConfigError(f"{name} must be in [0, 1], got {value!r}")
    return number


def count(name: str, value: object, minimum: int) -> int:
    """An integer >= ``minimum`` (dimensions, sample counts, epochs)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def choice(name: str, value: object, options) -> str:
    """One of ``options`` (named variants of a loss)."""
    if value not in options:
        raise ConfigError(f"{name} must be one of {list(options)}, got {value!r}")
    return value
