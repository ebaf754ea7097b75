"""Images/s of the cohort step fed by each data path, on synthetic CIFAR-shaped data.

``resident`` keeps the split on the device as uint8 and crops and flips there in batched tensor
ops; ``loader`` is a ``DataLoader`` whose workers run torchvision's transforms, followed by the
host-to-device copy. Both feed the same cohort (the harness's students, losses and flags). Each
path is timed twice: producing batches alone, and producing them for a cohort step, so the table
shows what the data path costs and how much of it the step hides. It measures; it asserts nothing.
"""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd
import torch
from matplotlib.figure import Figure

from bench.training.cohort import Acceleration, cohort_step
from bench.data.stream import DATA_PATHS, Loading, make_stream
from bench.perf.harness import (
    ROUNDS, WARM_UP, HarnessSetup, _info, cohort_under_test, fed, seconds_per_step, synthetic_split,
)
from bench.report.plots import save
from bench.training.streams import StudentStreams

def run_data_path_benchmark(setup: HarnessSetup, device: torch.device, accel: Acceleration, workers: int) -> pd.DataFrame:
    """One row per (data path, what was timed): ms per step and images/s; the fastest of ``ROUNDS`` epochs."""
    info = _info(setup)
    count = setup.batch_size * (setup.steps + WARM_UP)
    split = synthetic_split(count, setup)
    teacher, students, needs = cohort_under_test(setup, info, device, count, accel)
    streams = StudentStreams(len(students), device, accel.streams)

    def cohort(step: int, batch: tuple) -> None:
        images, labels, indices = batch
        cohort_step(students, teacher, needs, images, labels, indices, 0, step, accel, streams)

    timed = {"batches only": lambda step, batch: None, "cohort step": cohort}
    rows = []
    for path in DATA_PATHS:
        stream = make_stream(split, info, setup.batch_size, device, train=True, seed=0, loading=Loading(path, workers))
        for what, work in timed.items():
            seconds = min(seconds_per_step(fed(stream.epoch(epoch), work), setup.steps, device) for epoch in range(ROUNDS))
            rows.append({"data_path": path, "workers": workers if path == "loader" else 0, "timed": what,
                         "ms_per_step": seconds * 1000, "images_per_s": setup.batch_size / seconds})
    frame = pd.DataFrame(rows).assign(students=len(students), batch_size=setup.batch_size, teacher=setup.teacher,
                                      student=setup.student, losses=",".join(setup.losses))
    return frame.assign(**asdict(accel))


def plot(frame: pd.DataFrame, title: str, stem) -> list:
    """Images/s per data path: batches alone and with the cohort step."""
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    axis = fig.subplots()
    labels = [f"{row.data_path}\n{row.timed}" for row in frame.itertuples()]
    colours = ["#1f77b4" if path == "resident" else "#ff7f0e" for path in frame["data_path"]]
    axis.bar(labels, frame["images_per_s"], color=colours)
    axis.set_ylabel("images / s (higher is better)")
    axis.set_title(title, fontsize=9)
    return save(fig, stem)
