"""Where each cohort of a results directory's sweeps stands: pending, running, finished or failed.

Finished is what the results store says (every run of the cohort recorded); otherwise the job's
files and its scheduler tell: no job yet or queued -> pending; alive -> running; ended without
recording its runs -> failed. Every cohort with a job is shown with the last line its log holds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import submitit
from submitit.core.utils import JobPaths, pickle_load

from bench.store.results import ResultsStore
from bench.sweep.jobs import JobBook, JobEntry

# SLURM job states (sacct) of a job that has not ended
QUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RESIZING", "SUSPENDED", "UNKNOWN",
          "READY"}
ALIVE = {"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT"}


@dataclass(frozen=True)
class CohortStatus:
    entry: JobEntry
    state: str  # pending, running, finished, failed
    last_line: str = ""  # the last line of the job's log (of its progress, else of its output)


def sweep_status(results_dir: Path) -> list[CohortStatus]:
    book = JobBook(results_dir)
    recorded: dict[str, set[str]] = {}
    statuses = []
    for entry in book.entries():
        dataset = entry.cohort.dataset
        if dataset not in recorded:
            recorded[dataset] = ResultsStore(results_dir, dataset).finished_ids()
        statuses.append(cohort_status(entry, recorded[dataset], book.logs))
    return statuses


def cohort_status(entry: JobEntry, recorded: set[str], logs: Path) -> CohortStatus:
    if entry.job_id is None:
        return CohortStatus(entry, "finished" if set(entry.cohort.run_ids) <= recorded else "pending")
    paths = JobPaths(logs, entry.job_id, task_id=0)
    last = last_line(paths.stderr) or last_line(paths.stdout)
    if set(entry.cohort.run_ids) <= recorded:
        return CohortStatus(entry, "finished", last)
    if paths.result_pickle.exists():  # the job ended (an exception, or bench run's non-zero exit) without the runs
        return CohortStatus(entry, "failed", last or _outcome(paths.result_pickle))
    state = _scheduler_state(entry, logs)
    return CohortStatus(entry, state, "" if state == "pending" else last)


def _scheduler_state(entry: JobEntry, logs: Path) -> str:
    if entry.launcher == "slurm":
        state = submitit.SlurmJob(folder=logs, job_id=entry.job_id).state.split()[0]  # e.g. "CANCELLED by 42"
        return "pending" if state in QUEUED else "running" if state in ALIVE else "failed"
    try:  # a local job's id is its controller's process id
        os.kill(int(entry.job_id), 0)
    except ProcessLookupError:
        return "failed"
    except PermissionError:  # alive, another user's
        pass
    return "running"


def last_line(log: Path) -> str:
    """The last line of ``log`` written by the cohort itself (not submitit's own log lines)."""
    if not log.is_file():
        return ""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.strip() and not line.startswith("submitit "):
            return line.strip()
    return ""


def _outcome(result_pickle: Path) -> str:
    outcome, value = pickle_load(result_pickle)
    return f"bench run exited with code {value}" if outcome == "success" else str(value).strip().splitlines()[-1]
