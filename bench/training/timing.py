"""Wall time of sections of the training step without synchronising the device inside the step.

On CUDA each section records a pair of events and the durations are read once, at the end of an
epoch; on the CPU a monotonic clock is exact.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator

import torch


class SectionTimer:
    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self._pending: dict[str, list] = defaultdict(list)
        self._ms: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self._pending[name].append((start, end))
        else:
            start = time.perf_counter()
            yield
            self._ms[name] += (time.perf_counter() - start) * 1000
        self._counts[name] += 1

    def totals_ms(self) -> dict[str, float]:
        """Milliseconds per section so far (synchronises once on CUDA)."""
        if self._pending:
            torch.cuda.synchronize()
            for name, pairs in self._pending.items():
                self._ms[name] += sum(start.elapsed_time(end) for start, end in pairs)
            self._pending.clear()
        return dict(self._ms)

    def mean_ms(self, name: str) -> float | None:
        count = self._counts.get(name, 0)
        return self.totals_ms().get(name, 0.0) / count if count else None
