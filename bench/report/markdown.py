"""``leaderboard.md``: the leaderboard as a markdown table, the best loss of each comparison in bold,
then a line per comparison on its seeds, then the collapsed runs apart."""

from __future__ import annotations

import pandas as pd

from bench.report.display import cells, collapsed_runs, comparison_lines


def leaderboard_markdown(dataset: str, shown: pd.DataFrame, caption: str, notes: list[str],
                         collapsed: pd.DataFrame | None = None) -> str:
    table = cells(shown)
    best = shown["rank"].eq(1).fillna(False)
    for column in ("loss", "selected top-1 (%)"):
        table.loc[best, column] = "**" + table.loc[best, column] + "**"
    lines = [
        f"# {dataset} leaderboard",
        "",
        caption,
        "",
        *_table_lines(table),
        "",
        *(f"- {line}" for line in comparison_lines(shown)),
    ]
    if collapsed is not None and len(collapsed):
        lines += ["", "## Collapsed runs", "", *_table_lines(collapsed_runs(collapsed))]
    lines += [f"\n{note}" for note in notes]
    return "\n".join(lines) + "\n"


def _table_lines(table: pd.DataFrame) -> list[str]:
    return ["| " + " | ".join(table.columns) + " |", "|" + "|".join("---" for _ in table.columns) + "|",
            *("| " + " | ".join(row) + " |" for row in table.itertuples(index=False))]
