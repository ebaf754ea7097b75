"""``bench run``: train a cohort of students, one per loss, and append their results."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer

from bench.cli.app import app, console, invocation
from bench.training.cohort import Acceleration
from bench.data.stream import Loading
from bench.environment import resolve_device
from bench.run.runner import RunRequest, execute, plan_run
from bench.training.distributed import join_world
from bench.training.launch import relaunch_under_torchrun
from bench.training.tracking import Tracking, require_wandb, resolve_wandb_project
from registry import ConfigError

CACHE_ENV = "DISTILLBENCH_CACHE_DIR"
DEFAULT_CACHE = Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "distillbench"))


def parse_seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--seeds expects comma-separated integers such as 0,1,2; got '{text}'") from None
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ConfigError(f"--seeds expects distinct integers such as 0,1,2; got '{text}'")
    return seeds


@app.command()
def run(
    losses: Annotated[str, typer.Option(help="Comma-separated loss names (see 'bench losses list').")] = "vanilla,kd,fitnet",
    dataset: Annotated[str, typer.Option(help="Dataset name (see 'bench datasets list').")] = "fashion-mnist",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds; one run per loss and seed.")] = "0",
    pair: Annotated[Optional[str], typer.Option(help="Named teacher-student pair (see 'bench pairs list').")] = None,
    teacher: Annotated[Optional[str], typer.Option(help="Teacher timm model name.")] = None,
    student: Annotated[Optional[str], typer.Option(help="Student timm model name.")] = None,
    protocol: Annotated[str, typer.Option(help="Recipe protocol, e.g. 'standard', 'fast', or 'authors' (CIFAR-100: each loss "
                                                       "trains its authors' schedule for the pair).")] = "standard",
    epochs: Annotated[Optional[int], typer.Option(help="Override the recipe's epochs (milestones scale along).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Override the recipe's batch size.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Override the recipe's learning rate.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Loss setting LOSS.KEY=VALUE (hyperparameter, weight, ce_weight); repeatable.")] = None,
    tuned: Annotated[bool, typer.Option("--tuned", help="Apply RESULTS_DIR/DATASET/tuned.toml (bench tune's settings per loss) under --set; recorded in the run id and the row.")] = False,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda, cuda:N.")] = "auto",
    results_dir: Annotated[Path, typer.Option(help="Where runs.csv and the leaderboard go.")] = Path("results"),
    data_dir: Annotated[Optional[Path], typer.Option(help="Where the dataset's files are.")] = None,
    download: Annotated[bool, typer.Option(help="Download the dataset with torchvision when missing.")] = False,
    train_split: Annotated[Optional[str], typer.Option(help="Training split, e.g. 'train+extra' for SVHN.")] = None,
    cache_dir: Annotated[Path, typer.Option(help=f"Teachers and checkpoints (env {CACHE_ENV}).")] = DEFAULT_CACHE,
    teacher_checkpoint: Annotated[Optional[Path], typer.Option(help="Use this teacher state_dict instead of training one.")] = None,
    teacher_seed: Annotated[Optional[int], typer.Option(help="Train one teacher with this seed and share it by every seed [default: each seed trains its own].")] = None,
    strong_view: Annotated[bool, typer.Option("--strong-view", help="Every batch also as a strongly augmented view (RandAugment + Cutout, MLKD's recipe) for every student; recorded in the row.")] = False,
    validation_size: Annotated[Optional[int], typer.Option(min=0, help="Training images held out as the validation split epochs are selected on (stratified, the same for every seed); 0: none [default: the dataset recipe's].")] = None,
    clip_grad: Annotated[Optional[float], typer.Option(help="Clip each student's total gradient norm to this before every step (the teacher's never); in the run id and the row [default: the recipe's, none].")] = None,
    sequential: Annotated[bool, typer.Option(help="Train students one after another instead of as a cohort.")] = False,
    amp: Annotated[Optional[bool], typer.Option(help="bf16 autocast of the models [default: on for CUDA].")] = None,
    channels_last: Annotated[Optional[bool], typer.Option(help="channels_last memory format [default: on for CUDA].")] = None,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the student and teacher networks.")] = False,
    streams: Annotated[bool, typer.Option("--streams", help="Each student's step on its own CUDA stream.")] = False,
    fuse: Annotated[bool, typer.Option("--fuse", help="Same-architecture students run forward/backward as one stacked network (same results).")] = False,
    data_path: Annotated[str, typer.Option(help="resident (in-memory datasets on the device) or loader (DataLoader + torchvision transforms).")] = "resident",
    workers: Annotated[int, typer.Option(min=0, help="DataLoader workers (loader path and datasets not held in memory).")] = 4,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
    nproc: Annotated[int, typer.Option(min=1, help="Train each cohort on this many processes (torchrun, one GPU each); same numbers at the same global batch.")] = 1,
    tensorboard: Annotated[bool, typer.Option("--tensorboard", help="TensorBoard event files per run under RESULTS_DIR/DATASET/tensorboard/.")] = False,
    wandb: Annotated[bool, typer.Option("--wandb", help="Weights & Biases curves per run (needs wandb installed).")] = False,
    wandb_project: Annotated[Optional[str], typer.Option(help="Weights & Biases project (default: env WANDB_PROJECT, else distillbench).")] = None,
) -> None:
    """Train one student per loss as a cohort, append one row per run to the results, update the leaderboard."""
    if wandb:
        require_wandb()
    if nproc > 1:
        raise typer.Exit(relaunch_under_torchrun(nproc, invocation[1:]))
    world, device = join_world(device)
    accel = Acceleration.for_device(resolve_device(device), amp=amp, channels_last=channels_last, compile=compile,
                                    streams=streams, fuse=fuse)
    request = RunRequest(
        dataset=dataset, losses=losses, seeds=parse_seeds(seeds), pair=pair, teacher=teacher, student=student,
        protocol=protocol, epochs=epochs, batch_size=batch_size, lr=lr, overrides=tuple(set_ or ()), tuned=tuned, device=device,
        results_dir=results_dir, data_dir=data_dir, download=download, train_split=train_split, cache_dir=cache_dir,
        teacher_checkpoint=teacher_checkpoint, teacher_seed=teacher_seed, strong_view=strong_view,
        validation_size=validation_size, clip_grad=clip_grad, sequential=sequential, accel=accel,
        loading=Loading(data_path, workers), quiet=quiet, command=shlex.join(invocation), world=world,
        tracking=Tracking(tensorboard, resolve_wandb_project(wandb_project) if wandb else None),
    )
    store, refused = execute(plan_run(request))
    if world.is_main and store.runs_csv.is_file():
        from bench.report import build_report

        written = build_report(results_dir, datasets=[dataset], console=False if quiet else console())
        leaderboard = next((p for p in written if p.name == "leaderboard.csv"), store.runs_csv)
        typer.echo(f"leaderboard: {leaderboard}")
    if refused:
        raise ConfigError("; ".join(f"loss '{name}' refused on its first batch: {why}" for name, why in refused.items())
                          + f" (not recorded, every other run was; 'bench losses check {next(iter(refused))}' says more)")
