"""Each cohort as a submitit job: ``LocalExecutor`` on this machine, ``SlurmExecutor`` on a cluster.

A job runs ``bench run`` for its cohort. With more than one process per job (GPUs per node x nodes),
every task joins one ``torch.distributed`` world through ``submitit.helpers.TorchDistributedEnvironment``
and trains the cohort with the DDP path of ``bench.training.distributed``. A preempted or timed-out job
is requeued by submitit (``Checkpointable.checkpoint`` resubmits the same cohort); ``bench run``
resumes every run from its last epoch checkpoint and skips the runs already recorded.
"""

from __future__ import annotations

import shutil
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import submitit

from bench.sweep.jobs import JobBook, JobEntry
from bench.sweep.plan import Cohort, Grid
from registry import ConfigError

LAUNCHERS = ("local", "slurm")


@dataclass(frozen=True)
class SlurmOptions:
    """The size and place of each cohort's job (also read from a TOML file, see bench/recipes/slurm-example.toml)."""

    partition: str | None = None
    account: str | None = None
    nodes: int = 1
    gpus_per_node: int = 0  # one process per GPU; 0 = one process on CPUs
    time: int = 24 * 60  # minutes per job; a cohort that needs longer is requeued and resumes
    cpus_per_task: int | None = None
    max_requeues: int = 3  # timeouts tolerated per job (preemptions do not count)
    sbatch: dict[str, str] = field(default_factory=dict)  # further sbatch flags, e.g. {qos = "high"}

    @property
    def tasks_per_node(self) -> int:
        return max(self.gpus_per_node, 1)

    @property
    def world_size(self) -> int:
        return self.nodes * self.tasks_per_node

    def updated(self, **values: Any) -> "SlurmOptions":
        """These options with the values given (None = keep), each checked against its type."""
        given = {name: value for name, value in values.items() if value is not None}
        for name, value in given.items():
            if name not in SETTING_TYPES:
                raise ConfigError(f"unknown SLURM setting '{name}'; expected one of: {', '.join(SETTING_TYPES)}")
            expected = SETTING_TYPES[name]
            if not isinstance(value, expected) or isinstance(value, bool):
                raise ConfigError(f"SLURM setting {name} = {value!r}: expected a {expected.__name__}")
        options = replace(self, **given)
        if options.nodes < 1 or options.gpus_per_node < 0 or options.time < 1:
            raise ConfigError(f"SLURM settings nodes = {options.nodes}, gpus_per_node = {options.gpus_per_node}, "
                              f"time = {options.time}: expected nodes >= 1, gpus_per_node >= 0, time >= 1 minute")
        return options


SETTING_TYPES = {"partition": str, "account": str, "nodes": int, "gpus_per_node": int, "time": int,
                 "cpus_per_task": int, "max_requeues": int, "sbatch": dict}


def read_slurm_config(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read --slurm-config {path} ({exc}); expected a TOML file") from None


def make_executor(launcher: str, folder: Path, slurm: SlurmOptions) -> submitit.Executor:
    """submitit's executor for ``launcher``; refuses, before anything is written, what cannot start."""
    if launcher not in LAUNCHERS:
        raise ConfigError(f"unknown launcher '{launcher}'; expected one of: {', '.join(LAUNCHERS)}")
    missing = [tool for tool in ("sbatch", "srun") if launcher == "slurm" and shutil.which(tool) is None]
    if missing:
        raise ConfigError(f"--launcher slurm needs SLURM's {' and '.join(missing)} on the PATH, and there is none "
                          f"here; expected a SLURM login node, or --launcher local")
    if launcher == "local" and slurm.nodes != 1:
        raise ConfigError(f"--launcher local runs on this machine; expected --nodes 1, got {slurm.nodes}")
    executor = submitit.AutoExecutor(folder=folder, cluster=launcher, **{f"{launcher}_max_num_timeout": slurm.max_requeues})
    executor.update_parameters(
        name="distillbench", timeout_min=slurm.time, nodes=slurm.nodes, gpus_per_node=slurm.gpus_per_node,
        tasks_per_node=slurm.tasks_per_node, **({"cpus_per_task": slurm.cpus_per_task} if slurm.cpus_per_task else {}),
        slurm_partition=slurm.partition, slurm_account=slurm.account, slurm_additional_parameters=dict(slurm.sbatch),
    )
    return executor


class CohortJob(submitit.helpers.Checkpointable):
    """``bench run`` of one cohort; submitit requeues it as it is (the inherited ``checkpoint``), and the
    run resumes from its epoch checkpoints. Returns the exit code of ``bench run``."""

    def __init__(self, argv: list[str]):
        self.argv = list(argv)

    def __call__(self) -> int:
        if submitit.JobEnvironment().num_tasks > 1:  # one process per GPU: torchrun's variables, from SLURM's
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        from bench.cli import main  # up a layer: the job runs the command line itself (late: it imports every command)

        return main(self.argv)


def submit(cohorts: list[Cohort], grid: Grid, launcher: str, executor: submitit.Executor,
           book: JobBook, on_submit=lambda entry: None) -> list[submitit.Job]:
    """Submit each cohort and note its job in ``book``. A local sweep trains one cohort after another
    (they would share this machine's devices); on SLURM they queue side by side."""
    book.record(*(JobEntry(cohort, launcher) for cohort in cohorts))
    jobs = []
    for cohort in cohorts:
        job = executor.submit(CohortJob(cohort.run_argv(grid)))
        entry = JobEntry(cohort, launcher, str(job.job_id))
        book.record(entry)
        on_submit(entry)
        jobs.append(job)
        if launcher == "local":
            job.wait()
    return jobs
