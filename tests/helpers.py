"""Helpers shared by test modules (importable because pytest puts tests/ on the path)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import scipy.io
from PIL import Image

import bench.run.runner
from bench.data import cifar


def synthetic_run(tmp: Path, cache: Path, *extra: str) -> list[str]:
    return ["run", "--dataset", "synthetic", "--results-dir", tmp / "results", "--cache-dir", cache,
            "--device", "cpu", "--quiet", *extra]


def interrupt_after_first_epoch(monkeypatch, students: int) -> Callable[[], None]:
    """Make ``bench run`` stop (as on Ctrl-C) once each of ``students`` has checkpointed its first epoch;
    returns the function that lets runs finish again."""
    original_save = bench.run.runner.checkpoint.save
    saves = []

    def save_then_interrupt(state, path):
        original_save(state, path)
        if "runs" in path.parts:
            saves.append(path)
            if len(saves) == students:
                raise KeyboardInterrupt

    monkeypatch.setattr(bench.run.runner.checkpoint, "save", save_then_interrupt)
    return lambda: monkeypatch.setattr(bench.run.runner.checkpoint, "save", original_save)


class FixedStream:
    """One pass of fixed batches, as the harness's test stream gives them."""

    def __init__(self, batches):
        self.batches = batches

    def epoch(self, epoch):
        return iter(self.batches)


def read_runs(results: Path, dataset: str = "synthetic") -> pd.DataFrame:
    return pd.read_csv(results / dataset / "runs.csv").sort_values(["loss", "seed"]).reset_index(drop=True)


# -- tiny dataset files in their native on-disk formats ---------------------------------------
IMAGES_PER_FILE = 3


def cifar_rows(images: np.ndarray) -> np.ndarray:
    """The documented row layout: 1024 red values, then green, then blue, each plane row-major."""
    return np.concatenate([images[:, channel].reshape(len(images), 1024) for channel in range(3)], axis=1)


def write_cifar(root: Path, layout: cifar.CifarLayout, seed: int = 0) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Write every batch file of ``layout`` with random images; return what each file holds."""
    rng = np.random.default_rng(seed)
    folder = root / layout.folder
    folder.mkdir(parents=True)
    written = {}
    for name in layout.train_files + layout.test_files:
        images = rng.integers(0, 256, (IMAGES_PER_FILE, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, layout.info.num_classes, IMAGES_PER_FILE).tolist()
        batch = {b"batch_label": name.encode(), layout.label_key: labels, b"data": cifar_rows(images),
                 b"filenames": [f"img_{i}.png".encode() for i in range(IMAGES_PER_FILE)]}
        if layout is cifar.CIFAR100:
            batch[b"coarse_labels"] = [label // 5 for label in labels]
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle, protocol=2)
        written[name] = (images, labels)
    return written


def write_svhn(root: Path, part: str, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``<part>_32x32.mat`` as published: X uint8 [32, 32, 3, N], y uint8 [N, 1] with 10 for digit 0."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (32, 32, 3, count), dtype=np.uint8)
    y = (np.arange(count) % 10 + 1).astype(np.uint8)[:, None]  # 1..10, so label 10 is always present
    root.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(root / f"{part}_32x32.mat", {"X": x, "y": y})
    return x, y


WNIDS = ("n01440764", "n01443537")
COLOURS = {"n01440764": (200, 30, 60), "n01443537": (20, 180, 90)}


def write_class_folders(root: Path, images_per_class: dict[str, int]) -> None:
    """``<split>/<wnid>/*.JPEG`` with one solid colour per class, in a non-square size."""
    for split, count in images_per_class.items():
        for wnid in WNIDS:
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (60, 40), COLOURS[wnid]).save(folder / f"{wnid}_{i}.JPEG", quality=95)
