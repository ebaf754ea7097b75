"""``bench datasets list`` and ``bench pairs list``: what can be named on the command line."""

from __future__ import annotations

import typer
from rich.table import Table

from bench.cli.app import app, console
from bench.recipes.resolve import dataset_recipe, pair_catalog
from bench.data import DATASETS

datasets_app = typer.Typer(help="The datasets distillbench can load.", no_args_is_help=True)
pairs_app = typer.Typer(help="Named teacher -> student pairs.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
app.add_typer(pairs_app, name="pairs")


@datasets_app.command("list")
def list_datasets() -> None:
    """Each dataset with the default pair and schedule of its recipe."""
    table = Table("dataset", "default pair", "epochs", "batch", "lr", "protocols")
    for entry in DATASETS:
        recipe = dataset_recipe(entry.name)
        train = recipe["train"]
        protocols = ", ".join(["standard", *recipe.get("protocols", {})])
        table.add_row(entry.name, recipe["default_pair"], str(train["epochs"]), str(train["batch_size"]),
                      str(train["lr"]), protocols)
    console().print(table)


@pairs_app.command("list")
def list_pairs(dataset: str = typer.Option(None, help="Only pairs meant for this dataset.")) -> None:
    """Every named pair: teacher, student, the dataset it is meant for, same or cross architecture,
    and loss settings tuned for it."""
    catalog = pair_catalog()
    if dataset is not None:
        DATASETS.entry(dataset)
    table = Table("pair", "teacher", "student", "dataset", "kind", "teacher weights", "tuned for the pair")
    for name, entry in catalog.items():
        if dataset in (None, entry["dataset"]):
            teacher, student = name.split("-")
            tuned = ", ".join(f"{loss} {_settings(s)}" for loss, s in entry.get("losses", {}).items()) or "–"
            table.add_row(name, teacher, student, entry["dataset"], entry["kind"], entry.get("teacher_weights", "trained"),
                          tuned)
    console().print(table)


def _settings(layer: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in {**layer, **layer.get("params", {})}.items() if k not in ("params", "source"))
