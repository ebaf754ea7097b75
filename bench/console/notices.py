"""Warnings the user must see even with ``--quiet``: damaged files set aside, rows not trusted."""

import sys


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)
