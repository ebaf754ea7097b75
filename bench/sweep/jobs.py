"""The sweep's bookkeeping: which job trains which cohort, in ``<results>/sweep/jobs.json``.

Rewritten atomically under a file lock (several sweeps may share a results directory); the job's own
files (submitit's pickles and logs) lie in ``<results>/sweep/logs/``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock

from bench.store.results import atomic_write_text
from bench.sweep.plan import Cohort
from registry import ConfigError


@dataclass(frozen=True)
class JobEntry:
    cohort: Cohort
    launcher: str
    job_id: str | None = None  # None: not submitted yet (a local sweep submits one cohort at a time)


class JobBook:
    def __init__(self, results_dir: Path):
        self.directory = Path(results_dir) / "sweep"
        self.path = self.directory / "jobs.json"
        self.logs = self.directory / "logs"

    def entries(self) -> list[JobEntry]:
        if not self.path.is_file():
            return []
        try:
            rows = json.loads(self.path.read_text())
            return [JobEntry(Cohort(**{**row["cohort"], "run_ids": tuple(row["cohort"]["run_ids"])}), row["launcher"],
                             row["job_id"]) for row in rows]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{self.path} is not a sweep's job file ({exc}); move it aside") from None

    def record(self, *entries: JobEntry) -> None:
        """Add or replace the entries of these cohorts, keeping every other cohort's."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with FileLock(self.directory / ".jobs.lock"):
            kept = {entry.cohort.name: entry for entry in self.entries()}
            kept.update((entry.cohort.name, entry) for entry in entries)
            atomic_write_text(self.path, json.dumps([asdict(entry) for entry in kept.values()], indent=2) + "\n")
