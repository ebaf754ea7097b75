"""A sweep's grid -> cohorts, one per dataset x pair x seed, each with the runs still to train.

What is finished is decided by ``bench run``'s own planner (``bench.run.runner.plan_run``): the same run
ids, the same results store, so a sweep skips exactly what ``bench run`` would skip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.recipes.resolve import dataset_recipe, pair_catalog
from bench.run.runner import RunRequest, plan_run
from bench.training.distributed import World
from registry import ConfigError

ALL = "all"


@dataclass(frozen=True)
class RunOptions:
    """The ``bench run`` options a sweep gives every cohort (None = the recipe's value)."""

    protocol: str = "standard"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    settings: tuple[str, ...] = ()  # --set LOSS.KEY=VALUE
    device: str = "auto"
    data_dir: Path | None = None
    cache_dir: Path = Path.home() / ".cache" / "distillbench"
    teacher_seed: int | None = None
    strong_view: bool = False
    tensorboard: bool = False
    wandb_project: str | None = None  # None: no Weights & Biases

    def argv(self) -> list[str]:
        """These options as ``bench run`` arguments."""
        valued = {"--protocol": self.protocol, "--epochs": self.epochs, "--batch-size": self.batch_size,
                  "--lr": self.lr, "--device": self.device, "--data-dir": self.data_dir,
                  "--cache-dir": self.cache_dir, "--teacher-seed": self.teacher_seed,
                  "--wandb-project": self.wandb_project}
        args = [str(a) for option, value in valued.items() if value is not None for a in (option, value)]
        args += [a for setting in self.settings for a in ("--set", setting)]
        flags = (("--strong-view", self.strong_view), ("--tensorboard", self.tensorboard), ("--wandb", self.wandb_project))
        return args + [flag for flag, on in flags if on]


@dataclass(frozen=True)
class Grid:
    dataset: str
    pairs: tuple[str, ...]
    losses: str  # comma-separated, as for bench run
    seeds: tuple[int, ...]
    results_dir: Path
    options: RunOptions = field(default_factory=RunOptions)


@dataclass(frozen=True)
class Cohort:
    """The runs of one dataset, pair and seed: trained together by one ``bench run``, one job."""

    dataset: str
    pair: str
    seed: int
    run_ids: tuple[str, ...]  # the runs this cohort still had to train when planned

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.pair}/seed {self.seed}"

    def run_argv(self, grid: Grid) -> list[str]:
        """The ``bench run`` that trains this cohort (it resumes from epoch checkpoints and skips finished runs)."""
        return ["run", "--dataset", self.dataset, "--pair", self.pair, "--seeds", str(self.seed),
                "--losses", grid.losses, "--results-dir", str(grid.results_dir), *grid.options.argv()]


def parse_pairs(text: str, dataset: str) -> tuple[str, ...]:
    """``all`` = every catalog pair meant for ``dataset``; otherwise comma-separated catalog names."""
    dataset_recipe(dataset)  # an unknown dataset is named as such, not as a dataset without pairs
    catalog = pair_catalog()
    meant = [name for name, entry in catalog.items() if entry["dataset"] == dataset]
    if text.strip() == ALL:
        if not meant:
            raise ConfigError(f"no pair in the catalog is meant for {dataset}; name pairs with --pairs "
                              f"(see 'bench pairs list')")
        return tuple(meant)
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in catalog]
    if unknown or not names:
        raise ConfigError(f"unknown pair '{','.join(unknown) or text}'; expected '{ALL}' or some of: "
                          f"{', '.join(meant or sorted(catalog))}")
    return names


def plan_sweep(grid: Grid, world_size: int = 1) -> tuple[list[Cohort], list[Cohort]]:
    """(cohorts with runs to train, cohorts already finished), in grid order; validates everything first.

    ``world_size`` is the number of processes each job trains on: the global batch must split over them.
    """
    todo, finished = [], []
    for pair in grid.pairs:
        options = grid.options
        request = RunRequest(
            dataset=grid.dataset, losses=grid.losses, seeds=grid.seeds, pair=pair, protocol=options.protocol,
            epochs=options.epochs, batch_size=options.batch_size, lr=options.lr, overrides=options.settings,
            device="cpu",  # planning only: the host that submits need not have the jobs' GPUs
            results_dir=grid.results_dir, data_dir=options.data_dir, teacher_seed=options.teacher_seed,
            strong_view=options.strong_view, cache_dir=options.cache_dir, world=World(0, world_size),
        )
        plan = plan_run(request)
        for seed in grid.seeds:
            cohort = Cohort(grid.dataset, pair, seed, tuple(run.run_id for run in plan.specs[seed]))
            (todo if cohort.run_ids else finished).append(cohort)
    return todo, finished
