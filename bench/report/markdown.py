"""``leaderboard.md``: the leaderboard as a markdown table, the best loss of each comparison in bold,
then a line per comparison on its seeds."""

from __future__ import annotations

import pandas as pd

from bench.report.display import cells, comparison_lines


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
        "",
        *(f"- {line}" for line in comparison_lines(shown)),
        *(f"\n{note}" for note in notes),
    ]
    return "\n".join(lines) + "\n"
