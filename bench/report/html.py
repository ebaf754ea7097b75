"""``report.html``: one static page that answers the question first, readable offline.

It opens with a summary per comparison (best loss, which differences are real after the correction,
at what cost, what collapsed), then one table per comparison with the columns a reader needs (the
rest behind a toggle, in a box that scrolls sideways with the loss column held in place), then every
figure with a caption that says what it shows. Figures are embedded as base64 PNG, so the page is a
single file to mail or attach; nothing on it is wider than the window.
"""

from __future__ import annotations

import base64
import re
from html import escape
from pathlib import Path

import pandas as pd

from bench.report.display import baselines, cells, comparison_notes, summary_lines

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 80rem; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; max-width: 100%; margin-bottom: 0.5rem; }
table { border-collapse: collapse; font-size: 0.85rem; }
th, td { padding: 0.2rem 0.5rem; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; position: sticky; left: 0; background: #fff; }
tr.best td { font-weight: bold; }
details summary { cursor: pointer; color: #555; font-size: 0.85rem; }
figure { margin: 1.5rem 0; }
figcaption { color: #444; font-size: 0.85rem; max-width: 60rem; }
img { max-width: 100%; height: auto; }
.note { color: #555; font-size: 0.85rem; max-width: 60rem; }
code { overflow-wrap: anywhere; white-space: normal; }
"""
FIRST = ["loss", "#", "seeds", "selected top-1 (%)"]  # then each baseline's Δ and mark, then the cost


def report_html(dataset: str, shown: pd.DataFrame, caption: str, notes: list[str], figures: dict[Path, str]) -> str:
    """``figures``: each PNG and its caption, in the order they are shown."""
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(dataset)} · distillbench report</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{escape(dataset)} leaderboard</h1>",
        "<h2>Summary</h2>",
        "<ul>", *(f"<li>{escape(line)}</li>" for line in summary_lines(shown)), "</ul>",
        "<h2>Leaderboard</h2>",
        *_tables(shown),
        *(f'<p class="note">{escape(note)}</p>' for note in notes),
        f'<details><summary>how these runs were made</summary><p class="note">{_code(caption)}</p></details>',
        "<h2>Figures</h2>",
        *(_figure(path, text) for path, text in figures.items()),
        "</body></html>",
    ]) + "\n"


def default_columns(text: pd.DataFrame, shown: pd.DataFrame) -> list[str]:
    """What a reader needs at a glance: loss, rank, seeds, accuracy, each baseline's Δ and mark, cost."""
    paired = [c for b in baselines(shown) for c in text.columns if c == f"Δ {b}" or c.startswith(f"vs {b} (")]
    return [*FIRST, *paired, "s/epoch"]


def _tables(shown: pd.DataFrame) -> list[str]:
    text = cells(shown).drop(columns=["pair", "setting"])
    text = text[["loss", *(c for c in text.columns if c != "loss")]]
    notes = comparison_notes(shown)
    out = []
    for group, rows in shown.groupby("group", sort=False):
        first = rows.iloc[0]
        best = rows["rank"].eq(1).fillna(False).to_list()
        out.append(f"<h3>{escape(first['pair'])} · {escape(first['setting'])} · teacher "
                   f"{escape(str(first['teacher_top1_by_seed']))}%</h3>")
        out.append(_table(text.loc[rows.index, default_columns(text, shown)], best))
        out.append(f"<details><summary>all {len(text.columns)} columns</summary>"
                   f"{_table(text.loc[rows.index], best)}</details>")
        out.append(f'<p class="note">{escape(notes[group])}</p>')
    return out


def _table(text: pd.DataFrame, best: list[bool]) -> str:
    header = "".join(f"<th>{escape(column)}</th>" for column in text.columns)
    rows = [f'<tr class="{"best" if bold else ""}">' + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>"
            for row, bold in zip(text.itertuples(index=False), best)]
    return f'<div class="scroll"><table><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _figure(png: Path, caption: str) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(png.stem)}">'
            f"<figcaption>{escape(caption)} <code>plots/{escape(png.name)}</code></figcaption></figure>")


def _code(text: str) -> str:
    """The caption's `command` spans as <code>, everything else escaped."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", escape(text))
