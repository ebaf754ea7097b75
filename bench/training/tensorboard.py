"""Live curves of one run as TensorBoard event files (``bench run --tensorboard``), written by rank 0."""

from __future__ import annotations

from pathlib import Path


class EpochLog:
    """One event file per run: accuracy, each named loss term, the learning rate and images/s per epoch."""

    def __init__(self, directory: Path, global_batch: int):
        from torch.utils.tensorboard import SummaryWriter  # imported on use: tensorboard is optional at run time

        self.writer = SummaryWriter(log_dir=str(directory))
        self.global_batch = global_batch

    def write(self, record: dict, epoch: int, steps: int) -> None:
        scalars = {"test/top1": record["top1"], "test/top5": record["top5"],
                   **{f"train/{term}": value for term, value in record["train"].items()},
                   "lr": record["lr"], "images_per_s": steps * self.global_batch / max(record["wall_s"], 1e-9)}
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
