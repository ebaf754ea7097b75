"""The one option check ``losses.checks`` lacks: a value from a fixed set of choices."""

from __future__ import annotations

from registry import ConfigError


def choice(option: str, value, choices) -> None:
    """``value`` must be one of ``choices``; the error names them all."""
    if value not in choices:
        expected = ", ".join(str(c) for c in sorted(choices))
        raise ConfigError(f"{option} {value!r} is not valid; expected one of: {expected}")
