"""``bench perf harness``: the cohort step against the model-only limit and against sequential runs."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer

from bench.cli.app import console, invocation, perf_app

FLAGS = {"amp": "amp", "channels-last": "channels_last", "compile": "compile", "streams": "streams", "fuse": "fuse"}


def _ablated(text: str | None) -> list[str]:
    """``--ablate`` names -> Acceleration fields, in the order given."""
    from registry import ConfigError

    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    unknown = [n for n in names if n not in FLAGS]
    if unknown:
        raise ConfigError(f"unknown --ablate flag '{unknown[0]}'; expected some of: {', '.join(FLAGS)}")
    return [FLAGS[n] for n in names]


@perf_app.command("harness")
def perf_harness(
    teacher: Annotated[str, typer.Option(help="Teacher timm model.")] = "resnet32x4",
    student: Annotated[str, typer.Option(help="Student timm model (one per loss).")] = "resnet8x4",
    losses: Annotated[Optional[str], typer.Option(help="Comma-separated losses [default: 8 from the zoo].")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 64,
    steps: Annotated[int, typer.Option(help="Timed steps per mode (after two warm-up steps).")] = 20,
    image_size: Annotated[int, typer.Option(help="Synthetic image size (CIFAR: 32).")] = 32,
    num_classes: Annotated[int, typer.Option(help="Synthetic classes (CIFAR-100: 100).")] = 100,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda, cuda:N.")] = "auto",
    amp: Annotated[Optional[bool], typer.Option(help="bf16 autocast [default: on for CUDA].")] = None,
    channels_last: Annotated[Optional[bool], typer.Option(help="channels_last [default: on for CUDA].")] = None,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile every network.")] = False,
    streams: Annotated[bool, typer.Option("--streams", help="Each student's step on its own CUDA stream.")] = False,
    fuse: Annotated[bool, typer.Option("--fuse", help="Same-architecture students step as one stacked network.")] = False,
    ablate: Annotated[Optional[str], typer.Option(help=f"Flags to flip one at a time, timing the cohort step again: {', '.join(FLAGS)}.")] = None,
    profile: Annotated[bool, typer.Option("--profile", help="Also write where the cohort step's time goes (torch.profiler, as asked and each ablation) to harness_<device>_b<batch>_profile.txt.")] = False,
    out: Annotated[Path, typer.Option(help="Directory for harness_<device>_b<batch>.csv and its plot.")] = Path("results/perf"),
) -> None:
    """Images/s of model-only, cohort and sequential steps; prints cohort/model-only and cohort/sequential."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    from rich.table import Table

    from bench.training.cohort import Acceleration
    from bench.environment import device_name, resolve_device, versions
    from bench.models.network import check_model_name
    from bench.perf.harness import DEFAULT_LOSSES, HarnessSetup, profile_cohort_step, run_harness_benchmark
    from bench.perf.ot import device_slug
    from bench.store.results import atomic_write_text
    from losses import LOSSES
    from registry import ConfigError, parse_names

    target = resolve_device(device)
    for model in (teacher, student):
        check_model_name(model)
    if batch_size < 2 or steps < 1:
        raise ConfigError(f"--batch-size must be >= 2 and --steps >= 1; got {batch_size} and {steps}")
    flags = dict(amp=amp, channels_last=channels_last, compile=compile, streams=streams, fuse=fuse)
    accel = Acceleration.for_device(target, **flags)
    ablated = _ablated(ablate)
    variants = [Acceleration.for_device(target, **{**flags, key: not getattr(accel, key)}) for key in ablated]
    setup = HarnessSetup(teacher, student, parse_names(losses or DEFAULT_LOSSES, LOSSES), batch_size, steps,
                         image_size, num_classes)
    frame, loss_ms = run_harness_benchmark(setup, target, accel)
    step_ms = float(frame.loc[frame["mode"] == "cohort", "ms_per_step"].iloc[0])
    ips = dict(zip(frame["mode"], frame["images_per_s"]))
    flipped = [run_harness_benchmark(setup, target, variant, modes=("cohort",))[0] for variant in variants]
    name = device_name(target)
    variant_labels = ["as asked", *(f"{key} {'on' if getattr(v, key) else 'off'}" for v, key in zip(variants, ablated))]
    frame = pd.concat([f.assign(variant=label) for f, label in zip([frame, *flipped], variant_labels)],
                      ignore_index=True)
    frame = frame.assign(teacher=teacher, student=student, losses=",".join(setup.losses), device=name,
                         command=shlex.join(invocation), **versions())
    stem = f"harness_{device_slug(target, name)}_b{batch_size}"  # one file set per device and batch size
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{stem}.csv", frame.to_csv(index=False))
    shares = {k: (v or 0) / step_ms for k, v in loss_ms.items()}
    atomic_write_text(out / f"{stem}_losses.csv",
                      "loss,ms_per_call,share_of_cohort_step\n" + "".join(f"{k},{loss_ms[k]:.3f},{shares[k]:.4f}\n" for k in loss_ms))

    if profile:
        sections = [f"== cohort step, {label}\n{profile_cohort_step(setup, target, variant)}"
                    for label, variant in zip(variant_labels, [accel, *variants])]
        atomic_write_text(out / f"{stem}_profile.txt", f"{name}: {shlex.join(invocation)}\n\n" + "\n".join(sections))

    figure, axis = plt.subplots(figsize=(6, 3.5))
    labels = [m if v == "as asked" else f"{m}\n{v}" for m, v in zip(frame["mode"], frame["variant"])]
    colors = {"model-only": "#888888", "cohort": "#1f77b4", "sequential": "#ff7f0e"}
    axis.bar(labels, frame["images_per_s"], color=[colors[m] for m in frame["mode"]])
    axis.tick_params(axis="x", labelsize=7)
    axis.set_ylabel("images / s (higher is better)")
    axis.set_title(f"{teacher} → {len(setup.losses)}× {student}, batch {batch_size}\n{name}", fontsize=9)
    figure.tight_layout()
    for suffix in ("png", "svg"):
        figure.savefig(out / f"{stem}.{suffix}", dpi=120)
    plt.close(figure)

    table = Table("mode", "flags", "ms/step", "images/s")
    for row in frame.itertuples():
        table.add_row(row.mode, row.variant, f"{row.ms_per_step:.1f}", f"{row.images_per_s:.1f}")
    console().print(table)
    console().print(f"cohort / model-only throughput: {ips['cohort'] / ips['model-only']:.2f}   "
                    f"cohort / sequential: {ips['cohort'] / ips['sequential']:.2f}")
    console().print("loss share of the cohort step: " + ", ".join(f"{k} {v:.1%}" for k, v in shares.items()))
    console().print(f"wrote {out / f'{stem}.csv'}")
