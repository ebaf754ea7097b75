"""Published numbers beside ours, joined on pair + loss.

Each table is a CSV under ``bench/reference/`` whose first ``#`` line is its citation; its
``pair``/``loss`` columns use our zoo and loss names, and a ``teacher`` loss row gives the
published teacher. The papers report the last epoch of one run, so the difference is taken to
our last-epoch mean, and only for runs trained with the paper's budget: a 30-epoch run next to
a 240-epoch number shows both numbers but no difference.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from importlib import resources

import pandas as pd

# dataset -> (table, the settings it was trained with, in our results' columns)
PUBLISHED = {"cifar100": ("crd_cifar100.csv", {"protocol": "standard", "epochs": 240, "batch_size": 64})}


@dataclass(frozen=True)
class Published:
    table: pd.DataFrame  # pair, loss, top1 (loss "teacher" for the teacher)
    citation: str
    budget: dict

    @property
    def note(self) -> str:
        settings = ", ".join(f"{key} {value}" for key, value in self.budget.items())
        return f"Published: {self.citation} Δ published: our last-epoch mean − published, for runs with {settings}."

    def join(self, leaderboard: pd.DataFrame) -> pd.DataFrame:
        """Add ``published_top1``, ``delta_published`` and ``published_teacher_top1``."""
        numbers = self.table[["pair", "loss", "top1"]]
        students = numbers[numbers["loss"] != "teacher"].rename(columns={"top1": "published_top1"})
        teachers = numbers[numbers["loss"] == "teacher"].drop(columns="loss")
        joined = leaderboard.merge(students, on=["pair", "loss"], how="left")
        same_budget = pd.concat([joined[key] == value for key, value in self.budget.items()], axis=1).all(axis=1)
        joined["delta_published"] = (joined["last_top1_mean"] - joined["published_top1"]).where(same_budget)
        return joined.merge(teachers.rename(columns={"top1": "published_teacher_top1"}), on="pair", how="left")


def published(dataset: str) -> Published | None:
    """The published table for ``dataset``, or None where no paper gives one."""
    if dataset not in PUBLISHED:
        return None
    name, budget = PUBLISHED[dataset]
    text = (resources.files("bench") / "reference" / name).read_text()
    return Published(pd.read_csv(io.StringIO(text), comment="#"), text.splitlines()[0].lstrip("# "), budget)
