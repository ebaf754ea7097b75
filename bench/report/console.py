"""The leaderboard for the terminal: one rich table per comparison, its best loss in bold.

Pair, setting and teacher go into each table's title and headers are short. A table wider than
the console (a log is 80 columns) drops its least needed columns, in ``DROPPED_FIRST`` order, until
it fits, and says which ones leaderboard.md still has: a wrapped 20-column table is unreadable.
Cells are plain ``Text``: a label such as ``kd [1a2b3c4]`` must not be read as markup.
"""

from __future__ import annotations

import pandas as pd
from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from bench.report.display import cells, comparison_notes, number

IN_TITLE = ["pair", "setting", "teacher (%)"]
SHORT = {"selected top-1 (%)": "top-1", "val top-1 (%)": "val", "best on test (%)": "best on test",
         "last top-1 (%)": "last", "top-5 (%)": "top-5", "loss ms/step": "ms/step",
         "published (%)": "paper", "Δ published (last)": "Δ paper", "seeds for Δ 0.5": "seeds Δ0.5",
         "seeds": "n", "rank 95%": "rank CI"}
# columns left out where a table is too wide, by header prefix, earliest first
DROPPED_FIRST = ("top-5 (%)", "best on test (%)", "val top-1 (%)", "loss ms/step", "s/epoch", "Δ published (last)", "published (%)", "seeds for Δ 0.5",
                 "95% CI", "last top-1 (%)")


def leaderboard_tables(dataset: str, shown: pd.DataFrame, caption: str, console: Console) -> Group:
    text = cells(shown).drop(columns=IN_TITLE)
    text["seeds"] = [f"{n}{f'+{d}d' if d else ''}{f'+{c}c' if c else ''}"
                     for n, d, c in zip(shown["n_seeds"], shown["n_diverged"], shown["n_collapsed"])]
    notes = comparison_notes(shown)
    parts = []
    for group, rows in shown.groupby("group", sort=False):
        first = rows.iloc[0]
        title = f"{dataset} · {first['pair']} ({first['setting']}) · teacher {number(first['teacher_top1'])}%"
        columns, table = list(text.columns), None
        for prefix in [None, *DROPPED_FIRST]:
            columns = [c for c in columns if not (prefix and c.startswith(prefix))]
            table = _table(title, text.loc[rows.index, columns], rows["rank"].eq(1).fillna(False))
            if _natural_width(console, table) <= console.width:
                break
        parts.append(table)
        left_out = [SHORT.get(c, c) for c in text.columns if c not in columns]
        if left_out:
            parts.append(Text(f"not shown at {console.width} columns: {', '.join(left_out)} (see leaderboard.md)",
                              style="dim"))
        parts.append(Text(notes[group], style="dim"))
    footer = f"n: finished seeds (+d diverged, +c collapsed: excluded). top-1 / top-5 in %. {caption.replace('`', '')}"
    return Group(*parts, Text(footer, style="dim"))


def _natural_width(console: Console, table: Table) -> int:
    """The width ``table`` takes unwrapped (rich clamps a plain measure to the console's width)."""
    return console.measure(table, options=console.options.update_width(10_000)).maximum


def _table(title: str, text: pd.DataFrame, best: pd.Series) -> Table:
    table = Table(title=Text(title, style="bold"), box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for column in text.columns:
        table.add_column(SHORT.get(column, column), no_wrap=True)
    for index in text.index:
        table.add_row(*map(Text, text.loc[index]), style="bold" if best[index] else None)
    return table
