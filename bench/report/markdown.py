"""``leaderboard.md``: the leaderboard as a markdown table, the best loss of each comparison in bold."""

from __future__ import annotations

import pandas as pd

from bench.report.display import cells


def leaderboard_markdown(dataset: str, shown: pd.DataFrame, caption: str, notes: list[str]) -> str:
    table = cells(shown)
    best = shown["rank"].eq(1).fillna(False)
    for column in ("loss", "best top-1 (%)"):
        table.loc[best, column] = "**" + table.loc[best, column] + "**"
    lines = [
        f"# {dataset} leaderboard",
        "",
        caption,
        "",
        "| " + " | ".join(table.columns) + " |",
        "|" + "|".join("---" for _ in table.columns) + "|",
        *("| " + " | ".join(row) + " |" for row in table.itertuples(index=False)),
        *(f"\n{note}" for note in notes),
    ]
    return "\n".join(lines) + "\n"
