"""Live curves of each run, once per epoch, written by rank 0: TensorBoard event files
(``--tensorboard``, under ``<results>/<dataset>/tensorboard/<run_id>``) and Weights & Biases
(``--wandb``, one wandb run per run id, resumed with it). Both are off by default."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from registry import ConfigError

DEFAULT_WANDB_PROJECT = "distillbench"


def require_wandb() -> None:
    """``--wandb`` without the package: one line, before any work."""
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise ConfigError("--wandb needs the wandb package, which is not installed; expected "
                          "'pip install wandb' first, or no --wandb") from None


def resolve_wandb_project(option: str | None) -> str:
    return option or os.environ.get("WANDB_PROJECT") or DEFAULT_WANDB_PROJECT


@dataclass(frozen=True)
class Tracking:
    """Which trackers a run's curves go to."""

    tensorboard: bool = False
    wandb_project: str | None = None  # None: no Weights & Biases

    def open(self, directory: Path, run_id: str, config: dict, global_batch: int) -> "EpochLog":
        """The log of run ``run_id`` (it writes nowhere when nothing is tracked); ``directory`` is the
        dataset's results directory."""
        sinks: list[Sink] = []
        if self.tensorboard:
            sinks.append(TensorBoard(directory / "tensorboard" / run_id))
        if self.wandb_project is not None:
            sinks.append(Wandb(self.wandb_project, run_id, config, directory))
        return EpochLog(sinks, global_batch)


class Sink(Protocol):
    def log(self, scalars: dict[str, float], epoch: int) -> None: ...

    def close(self) -> None: ...


class EpochLog:
    """Accuracy, each named loss term, the learning rate and images/s of every epoch, to each sink."""

    def __init__(self, sinks: list[Sink], global_batch: int):
        self.sinks = sinks
        self.global_batch = global_batch

    def write(self, record: dict, epoch: int, steps: int) -> None:
        scalars = {"test/top1": record["top1"], "test/top5": record["top5"],
                   **{f"train/{term}": value for term, value in record["train"].items()},
                   "lr": record["lr"], "images_per_s": steps * self.global_batch / max(record["wall_s"], 1e-9)}
        for sink in self.sinks:
            sink.log(scalars, epoch)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


class TensorBoard:
    def __init__(self, directory: Path):
        from torch.utils.tensorboard import SummaryWriter  # imported on use

        self.writer = SummaryWriter(log_dir=str(directory))

    def log(self, scalars: dict[str, float], epoch: int) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class Wandb:
    """One wandb run per run id (a resumed run continues it); a cohort's runs are live side by side."""

    def __init__(self, project: str, run_id: str, config: dict, directory: Path):
        import wandb  # imported on use: an optional dependency (require_wandb checked it)

        directory.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=project, id=run_id, name=f"{config['loss']['name']} seed {config['seed']}",
                              resume="allow", config=config, dir=str(directory), reinit="create_new")

    def log(self, scalars: dict[str, float], epoch: int) -> None:
        self.run.log({**scalars, "epoch": epoch}, step=epoch)

    def close(self) -> None:
        self.run.finish()
