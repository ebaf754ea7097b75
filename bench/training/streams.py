"""Optional CUDA streams for a cohort: each student's step on its own stream, so the kernels of
small students, which alone cannot fill a GPU, may overlap.

Every student's stream first waits for the current stream (the batch and the teacher's outputs are
ready there), and the current stream waits for every student's stream before it goes on, so memory
one stream frees is never reused early by another and the next batch sees finished weights.
Without CUDA, or when disabled, every member runs on the current stream: the same computation.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


class StudentStreams:
    def __init__(self, count: int, device: torch.device, enabled: bool):
        self._streams = [torch.cuda.Stream(device) for _ in range(count)] if enabled else []

    @contextmanager
    def member(self, index: int) -> Iterator[None]:
        """Run the block on student ``index``'s stream, after the work queued so far."""
        if not self._streams:
            yield
            return
        stream = self._streams[index]
        stream.wait_stream(torch.cuda.current_stream(stream.device))
        with torch.cuda.stream(stream):
            yield

    def join(self) -> None:
        """Make the current stream wait for every student's stream (no host synchronisation)."""
        for stream in self._streams:
            torch.cuda.current_stream(stream.device).wait_stream(stream)
