"""``report.html``: one static page with the leaderboard and every figure, readable offline.

Figures are embedded as base64 PNG, so the page is a single file to mail or attach.
"""

from __future__ import annotations

import base64
import re
from html import escape
from pathlib import Path

import pandas as pd

from bench.report.display import cells, comparison_lines

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
th:nth-child(-n+4), td:nth-child(-n+4) { text-align: left; }
tr.best { font-weight: bold; }
tr.first td { border-top: 2px solid #888; }
figure { display: inline-block; margin: 1rem 1rem 1rem 0; }
img { max-width: 100%; }
.note { color: #555; font-size: 0.85rem; max-width: 60rem; }
"""


def report_html(dataset: str, shown: pd.DataFrame, caption: str, notes: list[str], figures: list[Path]) -> str:
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(dataset)} · distillbench report</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{escape(dataset)} leaderboard</h1>",
        f"<p>{_code(caption)}</p>",
        _table(shown),
        *(f'<p class="note">{escape(note)}</p>' for note in [*comparison_lines(shown), *notes]),
        "<h2>Figures</h2>",
        *(_figure(path) for path in figures),
        "</body></html>",
    ]) + "\n"


def _table(shown: pd.DataFrame) -> str:
    text = cells(shown)
    best = shown["rank"].eq(1).fillna(False).to_list()
    first_of_group = shown["group"].ne(shown["group"].shift()).to_list()
    header = "".join(f"<th>{escape(column)}</th>" for column in text.columns)
    rows = []
    for row, bold, first in zip(text.itertuples(index=False), best, first_of_group):
        classes = " ".join(name for name, on in (("best", bold), ("first", first)) if on)
        rows.append(f'<tr class="{classes}">' + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>")
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _figure(png: Path) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    name = escape(png.stem)
    return f'<figure><img src="data:image/png;base64,{data}" alt="{name}"><figcaption>{name}</figcaption></figure>'


def _code(text: str) -> str:
    """The caption's `command` spans as <code>, everything else escaped."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", escape(text))
