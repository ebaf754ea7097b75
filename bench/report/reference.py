"""Published numbers beside ours, joined on pair + loss.

Each table is a CSV under ``bench/reference/`` whose first ``#`` line is its citation; its
``pair``/``loss`` columns use our zoo and loss names, an optional ``source`` column names the
publication of each row, and a ``teacher`` loss row gives the published teacher. A dataset may
have several tables (the CRD table, then the methods published since); they are joined as one,
and a (pair, loss) given twice with different numbers is an error in the tables, not a choice
made silently. The papers report the last epoch of one run, so the difference is taken to our
last-epoch mean, and only for runs trained with the table's budget: a 30-epoch run next to a
240-epoch number shows both numbers but no difference. A row trained on a second, strongly
augmented view (MLKD's recipe) says so in an optional ``strong_view`` column: it is compared with
runs of ``--strong-view`` only, and the other rows with runs of one view only.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from importlib import resources

import pandas as pd

from bench.report.runs import flag

CRD_BUDGET = {"protocol": "standard", "epochs": 240, "batch_size": 64}  # the CRD protocol, in our results' columns


@dataclass(frozen=True)
class Source:
    """A published table: its file, and the settings its numbers were trained with."""

    file: str
    budget: dict


# dataset -> its tables, in the order their citations are shown
PUBLISHED = {"cifar100": (Source("crd_cifar100.csv", CRD_BUDGET), Source("modern_cifar100.csv", CRD_BUDGET))}


@dataclass(frozen=True)
class Table:
    table: pd.DataFrame  # pair, loss, top1 (loss "teacher" for the teacher), source
    citation: str
    budget: dict

    @property
    def settings(self) -> str:
        return ", ".join(f"{key} {value}" for key, value in self.budget.items())


@dataclass(frozen=True)
class Published:
    tables: tuple[Table, ...]

    @property
    def table(self) -> pd.DataFrame:
        """Every table's numbers, one row per (pair, loss), with the budget they were trained with."""
        frames = [t.table[["pair", "loss", "top1", "source", "strong_view"]].assign(budget=t.settings)
                  for t in self.tables]
        return pd.concat(frames, ignore_index=True).drop_duplicates(["pair", "loss"])

    @property
    def note(self) -> str:
        citations = " ".join(t.citation for t in self.tables)
        sources = "; ".join(dict.fromkeys(source for t in self.tables for source in t.table["source"]))
        budgets = "; ".join(dict.fromkeys(t.settings for t in self.tables))
        return (f"Published: {citations} Each row's source (published_source in leaderboard.csv): {sources}. "
                f"Δ published: our last-epoch mean − published, for runs with {budgets}.")

    def join(self, leaderboard: pd.DataFrame) -> pd.DataFrame:
        """Add ``published_top1``, ``published_source``, ``delta_published`` and ``published_teacher_top1``."""
        numbers = self.table.rename(columns={"top1": "published_top1", "source": "published_source",
                                             "strong_view": "published_strong_view"})
        students = numbers[numbers["loss"] != "teacher"]
        teachers = numbers[numbers["loss"] == "teacher"][["pair", "published_top1"]]
        joined = leaderboard.merge(students, on=["pair", "loss"], how="left")
        ours_strong = joined["strong_view"].eq(True) if "strong_view" in joined else False
        same_budget = pd.Series(False, index=joined.index)
        for table in self.tables:
            trained_alike = pd.concat([joined[key] == value for key, value in table.budget.items()], axis=1).all(axis=1)
            same_budget |= (joined["budget"] == table.settings) & trained_alike
        same_budget &= joined["published_strong_view"].eq(True) == ours_strong
        joined["delta_published"] = (joined["last_top1_mean"] - joined["published_top1"]).where(same_budget)
        joined = joined.drop(columns=["budget", "published_strong_view"])
        return joined.merge(teachers.rename(columns={"published_top1": "published_teacher_top1"}), on="pair", how="left")


def read_table(source: Source) -> Table:
    text = (resources.files("bench") / "reference" / source.file).read_text()
    table = pd.read_csv(io.StringIO(text), comment="#")
    if "source" not in table:
        table["source"] = source.file  # the file's citation covers every row
    table["strong_view"] = flag(table, "strong_view")
    return Table(table, text.splitlines()[0].lstrip("# "), source.budget)


def conflicts(tables: tuple[Table, ...], names: list[str]) -> list[str]:
    """Each (pair, loss) that two tables give with different numbers, naming both numbers and tables."""
    frames = [t.table[["pair", "loss", "top1"]].assign(file=name) for t, name in zip(tables, names)]
    numbers = pd.concat(frames, ignore_index=True)
    clashing = numbers.groupby(["pair", "loss"])["top1"].transform(lambda top1: top1.nunique(dropna=False) > 1)
    return [f"{pair} {loss}: " + ", ".join(f"{top1} in {file}" for top1, file in zip(rows["top1"], rows["file"]))
            for (pair, loss), rows in numbers[clashing].groupby(["pair", "loss"])]


def published(dataset: str) -> Published | None:
    """The published tables for ``dataset``, or None where no paper gives one."""
    if dataset not in PUBLISHED:
        return None
    sources = PUBLISHED[dataset]
    tables = tuple(map(read_table, sources))
    clashes = conflicts(tables, [s.file for s in sources])
    if clashes:
        raise ValueError(f"published tables of {dataset} disagree: " + "; ".join(clashes))
    return Published(tables)
