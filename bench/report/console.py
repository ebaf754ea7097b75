"""The leaderboard for the terminal: one rich table per comparison, its best loss in bold.

Pair, setting and teacher go into each table's title and headers are short, which keeps a table
narrow enough for a terminal (a narrower one wraps cells, never cuts them). Cells are plain
``Text``: a label such as ``kd [1a2b3c4]`` must not be read as markup.
"""

from __future__ import annotations

import pandas as pd
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from bench.report.display import cells, number

IN_TITLE = ["pair", "setting", "teacher (%)"]
SHORT = {"best top-1 (%)": "best", "last top-1 (%)": "last", "top-5 (%)": "top-5", "loss ms/step": "ms/step",
         "published (%)": "paper", "Δ published (last)": "Δ paper"}


def leaderboard_tables(dataset: str, shown: pd.DataFrame, caption: str) -> Group:
    text = cells(shown).drop(columns=IN_TITLE)
    best = shown["rank"].eq(1).fillna(False)
    tables = []
    for _, rows in shown.groupby("group", sort=False):
        first = rows.iloc[0]
        title = f"{dataset} · {first['pair']} ({first['setting']}) · teacher {number(first['teacher_top1'])}%"
        table = Table(title=Text(title, style="bold"), box=box.SIMPLE_HEAD, pad_edge=False)
        for column in text.columns:
            table.add_column(SHORT.get(column, column), no_wrap=column == "loss", overflow="fold")
        for index in rows.index:
            table.add_row(*map(Text, text.loc[index]), style="bold" if best[index] else None)
        tables.append(table)
    return Group(*tables, Text(f"top-1 / top-5 in %. {caption.replace('`', '')}", style="dim"))
