"""Every figure that needs a GPU, in one prepared run: ``python -m bench.perf.gpu_figures``.

Sized to finish in under 8 minutes on one H100/H200, on synthetic data only. In order: the CUDA
tests; the projected wall time of the CIFAR-100 table (15 losses, one pair, 240 epochs, then 13
pairs x 3 seeds); ``bench perf harness`` at batch 64 and 256 (model-only limit, cohort,
sequential, each speed flag flipped); ``bench perf ot``, and the OT losses' share of a batch-256
cohort step; the resident data path against the DataLoader; and last, as it is the slowest to
warm up, the harness with ``--compile`` flipped. Each step is a child process with its own time
budget under one global deadline; a step that fails or runs out of time is recorded and the next
one runs. Every file lands in ``--out`` with the device model in its name, beside
``gpu_figures_<device>.md`` / ``.csv``: the device, torch version, each command, its outcome and
the headline numbers. ``--device cpu --tiny`` rehearses every step at toy sizes, so the GPU run
cannot fail for a trivial reason.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: the CUDA tests run from here
WANTED_FLAGS = ("amp", "channels-last", "compile", "streams", "fuse")  # flipped by the harness's --ablate
MIN_STEP_S = 10  # a step that would get less than this is not started
TINY_BUDGET_S = 900.0  # per step of a rehearsal: generous, as a shared CPU can be many times slower than alone
OWN_STEPS = ("table", "data-path")  # measurements of this module, each run in a child process like the rest
OT_LOSSES = "ot-ipot,ot-emd,ot-sinkhorn,ot-sinkdiv,ot-sliced,ot-maxsliced,wkd-l,sinkd"


@dataclass(frozen=True)
class Sizes:
    """Everything the run's size depends on: the GPU sizes, or toy ones for a CPU rehearsal."""

    teacher: str
    student: str
    losses: str  # the harness's and the data path's cohort
    ot_losses: str  # the cohort whose OT losses' share of a step is measured at the largest batch
    batches: tuple[int, ...]
    steps: int  # timed steps per harness mode and per data path
    image_size: int
    num_classes: int
    ot_options: tuple[str, ...]
    workers: int  # DataLoader workers of the loader path
    table_losses: str
    table_steps: int
    train_images: int
    test_images: int
    cuda_tests: str  # pytest's target, run with -k cuda
    budgets: dict[str, float]  # seconds per step (none: TINY_BUDGET_S each)
    deadline_s: float  # for all steps together


def _gpu_sizes() -> Sizes:
    from bench.perf.harness import DEFAULT_LOSSES
    from bench.perf.projection import TABLE_LOSSES, TEST_IMAGES, TRAIN_IMAGES

    budgets = {"cuda-tests": 60, "table": 75, "harness-b64": 70, "harness-b256": 60, "ot": 70, "ot-share": 50,
               "data-path": 40, "harness-b64-compile": 60, "harness-b256-compile": 50}
    return Sizes("resnet32x4", "resnet8x4", DEFAULT_LOSSES, OT_LOSSES, (64, 256), 30, 32, 100,
                 ("--repeats", "3", "--skip", "gaussian_w2:*:2048"), 8,
                 TABLE_LOSSES, 40, TRAIN_IMAGES, TEST_IMAGES, "tests", budgets, deadline_s=460)  # 8 minutes less the summary


def _tiny_sizes() -> Sizes:
    ot_options = ("--sizes", "16", "--dims", "8", "--methods", "sinkhorn,ipot", "--repeats", "1")
    return Sizes("test_resnet", "test_efficientnet", "kd,fitnet,ot-ipot", "ot-ipot,ot-sinkhorn", (4, 8), 1, 16, 5,
                 ot_options, 0,
                 "vanilla,kd,crd", 1, 64, 32, "tests/ot/test_cuda.py", {}, deadline_s=3600)


@dataclass(frozen=True)
class Step:
    name: str
    argv: list[str]
    budget_s: float

    @property
    def command(self) -> str:
        """The command as a person would type it (``bench ...``, ``python -m ...``)."""
        argv = self.argv
        if argv[:3] == [sys.executable, "-m", "bench"]:
            argv = ["bench", *argv[3:]]
        return shlex.join(["python" if part == sys.executable else part for part in argv])


@dataclass(frozen=True)
class Outcome:
    step: str
    status: str  # ok, failed (exit N), timed out after N s, not run: ...
    wall_s: float
    command: str
    log: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def run_steps(steps: list[Step], deadline_s: float, logs: Path, suffix: str) -> list[Outcome]:
    """Run each step in its own process group, its output to ``logs/<step>_<suffix>.log``, within its
    budget and what is left of ``deadline_s``; a failure or a timeout is recorded and the next step runs."""
    logs.mkdir(parents=True, exist_ok=True)
    start, outcomes = time.monotonic(), []
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    for step in steps:
        log = logs / f"{step.name}_{suffix}.log"
        left = deadline_s - (time.monotonic() - start)
        if left < MIN_STEP_S:
            outcomes.append(Outcome(step.name, "not run: the global deadline was reached", 0.0, step.command, ""))
            continue
        began, timeout = time.monotonic(), min(step.budget_s, left)
        with log.open("w") as sink:
            child = subprocess.Popen(step.argv, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                     start_new_session=True)
            try:
                code = child.wait(timeout=timeout)
                status = "ok" if code == 0 else f"failed (exit {code})"
            except subprocess.TimeoutExpired:
                status = f"timed out after {timeout:.0f} s"
            finally:
                if child.poll() is None:  # timed out or interrupted: stop the step and its workers
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait()
        outcomes.append(Outcome(step.name, status, time.monotonic() - began, step.command, str(log)))
    return outcomes


def harness_flags(device_type: str, tiny: bool) -> tuple[list[str], dict[str, str]]:
    """The wanted ``--ablate`` flags the harness accepts here, and why each other one is skipped."""
    from bench.cli.perf_harness import FLAGS  # up a layer: the flags are the harness command's own options

    skipped = {flag: f"not offered by `bench perf harness --ablate` (it accepts {', '.join(FLAGS)})"
               for flag in WANTED_FLAGS if flag not in FLAGS}
    if device_type != "cuda" and "streams" in FLAGS:
        skipped["streams"] = "needs a CUDA device"
    if tiny and "compile" in FLAGS:
        skipped["compile"] = "not rehearsed at toy sizes (torch.compile alone would take minutes on a CPU)"
    return [flag for flag in WANTED_FLAGS if flag not in skipped], skipped


def plan(sizes: Sizes, device: str, out: Path, tiny: bool, flags: list[str], slug: str) -> list[Step]:
    """The steps in the order they run: the most wanted figures first, the slowest to warm up last."""
    python, bench = [sys.executable], [sys.executable, "-m", "bench"]

    def budget(name: str) -> float:
        return sizes.budgets.get(name, TINY_BUDGET_S)

    def own(name: str) -> Step:
        argv = [*python, "-m", "bench.perf.gpu_figures", "--step", name, "--device", device,
                *(["--tiny"] if tiny else []), "--out", str(out)]
        return Step(name, argv, budget(name))

    def harness(batch: int, ablate: list[str], name: str, where: Path, losses: str = sizes.losses) -> Step:
        argv = [*bench, "perf", "harness", "--teacher", sizes.teacher, "--student", sizes.student,
                "--losses", losses, "--batch-size", str(batch), "--steps", str(sizes.steps),
                "--image-size", str(sizes.image_size), "--num-classes", str(sizes.num_classes), "--device", device,
                *(["--ablate", ",".join(ablate)] if ablate else []), "--out", str(where)]
        return Step(name, argv, budget(name))

    cheap = [flag for flag in flags if flag != "compile"]
    pytest = [*python, "-m", "pytest", sizes.cuda_tests, "-k", "cuda or streams", "-q", "-p", "no:cacheprovider",
              "--ignore=tests/test_gpu_figures.py", f"--junitxml={out / f'cuda_tests_{slug}.xml'}"]  # not itself
    steps = [Step("cuda-tests", pytest, budget("cuda-tests")), own("table")]
    steps += [harness(batch, cheap, f"harness-b{batch}", out) for batch in sizes.batches]
    steps += [Step("ot", [*bench, "perf", "ot", "--device", device, *sizes.ot_options, "--out", str(out)], budget("ot")),
              harness(max(sizes.batches), [], "ot-share", out / "ot-share", sizes.ot_losses), own("data-path")]
    if "compile" in flags:  # its own files under compile/, so a timeout there loses nothing else
        steps += [harness(batch, ["compile"], f"harness-b{batch}-compile", out / "compile") for batch in sizes.batches]
    return steps


def run_own_step(name: str, device: str, sizes: Sizes, out: Path) -> list[Path]:
    """One of this module's measurements, in this process; returns the files it wrote."""
    from bench.training.cohort import Acceleration
    from bench.environment import device_name, resolve_device, versions
    from bench.perf import data_path, projection
    from bench.perf.harness import HarnessSetup
    from bench.perf.ot import device_slug
    from bench.store.results import atomic_write_text
    from losses import LOSSES
    from registry import parse_names

    target = resolve_device(device)
    where = device_name(target)
    slug = device_slug(target, where)
    accel = Acceleration.for_device(target)
    losses = sizes.table_losses if name == "table" else sizes.losses
    setup = HarnessSetup(sizes.teacher, sizes.student, parse_names(losses, LOSSES), sizes.batches[0],
                         sizes.table_steps if name == "table" else sizes.steps, sizes.image_size, sizes.num_classes)
    out.mkdir(parents=True, exist_ok=True)
    if name == "data-path":
        frame = data_path.run_data_path_benchmark(setup, target, accel, sizes.workers)
        atomic_write_text(out / f"data_path_{slug}.csv", frame.assign(device=where, **versions()).to_csv(index=False))
        title = f"{setup.teacher} → {len(setup.losses)}× {setup.student}, batch {setup.batch_size}: {where}"
        return [out / f"data_path_{slug}.csv", *data_path.plot(frame, title, out / f"data_path_{slug}")]
    measured = projection.measure(setup, target, accel, sizes.train_images, sizes.test_images)
    frame = projection.project(measured, setup, sizes.train_images, sizes.test_images)
    csv, md = out / f"cifar100_table_time_{slug}.csv", out / f"cifar100_table_time_{slug}.md"
    atomic_write_text(csv, frame.assign(device=where, **versions()).to_csv(index=False))
    atomic_write_text(md, projection.markdown(frame, where, accel))
    return [csv, md]


def _read(path: Path):
    import pandas as pd

    return pd.read_csv(path) if path.exists() else None


def headlines(out: Path, slug: str, sizes: Sizes) -> list[str]:
    """The numbers worth reading first, from the files the steps wrote (absent where a step did not write one)."""
    from bench.perf.projection import EPOCHS, PAIRS, SEEDS

    lines = []
    table = _read(out / f"cifar100_table_time_{slug}.csv")
    if table is not None:
        hours, losses = dict(zip(table["quantity"], table["value"])), len(sizes.table_losses.split(","))
        lines.append(f"- One {EPOCHS}-epoch CIFAR-100 cohort ({losses} losses, one pair): "
                     f"{hours['cohort, 240 epochs']:.2f} h; the {PAIRS} pairs x {losses} losses x {SEEDS} seeds table: "
                     f"{hours['table, students']:.1f} h of students, {hours['table, with teachers']:.1f} h with 13 teachers.")
    for batch in sizes.batches:
        harness = _read(out / f"harness_{slug}_b{batch}.csv")
        if harness is not None:
            ips = dict(zip(*harness[harness["variant"] == "as asked"][["mode", "images_per_s"]].to_numpy().T))
            lines.append(f"- Harness, batch {batch}: cohort {ips['cohort']:.0f} images/s = "
                         f"{ips['cohort'] / ips['model-only']:.2f} of the model-only limit, "
                         f"{ips['cohort'] / ips['sequential']:.2f}x sequential runs.")
    shares = _read(out / "ot-share" / f"harness_{slug}_b{max(sizes.batches)}_losses.csv")
    if shares is not None:
        lines.append(f"- Share of a batch-{max(sizes.batches)} cohort step of {len(shares)} OT losses: " + ", ".join(
            f"{row.loss} {row.share_of_cohort_step:.1%} ({row.ms_per_call:.2f} ms)" for row in shares.itertuples()) + ".")
    paths = _read(out / f"data_path_{slug}.csv")
    if paths is not None:
        step = paths[paths["timed"] == "cohort step"]
        lines.append("- Cohort step by data path: " + ", ".join(
            f"{row.data_path} {row.images_per_s:.0f} images/s" for row in step.itertuples()) + ".")
    return lines or ["- No figure was measured."]


def summary(outcomes: list[Outcome], skipped: dict[str, str], where: str, out: Path, slug: str, sizes: Sizes) -> str:
    import torch

    from bench.environment import versions

    lines = [f"# GPU figures: {where}", "",
             f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'}); "
             + ", ".join(f"{key.removesuffix('_version')} {value}" for key, value in versions().items()
                         if key != "torch_version") + ". Synthetic data only.", "",
             *headlines(out, slug, sizes), "",
             "| step | outcome | wall (s) | command |", "|---|---|---|---|"]
    lines += [f"| {o.step} | {o.status} | {o.wall_s:.1f} | `{o.command}` |" for o in outcomes]
    if skipped:
        lines += ["", "Speed flags not ablated:", *(f"- `{flag}`: {why}" for flag, why in skipped.items())]
    for outcome in outcomes:
        if not outcome.ok and outcome.log:
            tail = Path(outcome.log).read_text(errors="replace").splitlines()[-8:]
            lines += ["", f"Last lines of {outcome.step} ({Path(outcome.log).name}):", "```", *tail, "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf.gpu_figures", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default: cuda)")
    parser.add_argument("--tiny", action="store_true", help="toy sizes: a CPU rehearsal of every step")
    parser.add_argument("--out", type=Path, default=Path("results/perf"), help="directory of every file written")
    parser.add_argument("--deadline-s", type=float, default=None, help="all steps together [default: 460, tiny 3600]")
    parser.add_argument("--step", choices=OWN_STEPS, help=argparse.SUPPRESS)  # how the run starts its own steps
    args = parser.parse_args(argv)

    from bench.environment import device_name, resolve_device
    from bench.perf.ot import device_slug
    from bench.store.results import atomic_write_text
    from registry import ConfigError

    sizes = _tiny_sizes() if args.tiny else _gpu_sizes()
    out = args.out.resolve()
    try:
        target = resolve_device(args.device)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.step:
        for path in run_own_step(args.step, args.device, sizes, out):
            print(f"wrote {path}")
        return 0
    where = device_name(target)
    slug = device_slug(target, where)
    flags, skipped = harness_flags(target.type, args.tiny)
    out.mkdir(parents=True, exist_ok=True)
    outcomes = run_steps(plan(sizes, args.device, out, args.tiny, flags, slug),
                         sizes.deadline_s if args.deadline_s is None else args.deadline_s, out / "logs", slug)
    import pandas as pd

    atomic_write_text(out / f"gpu_figures_{slug}.csv", pd.DataFrame([vars(o) for o in outcomes]).to_csv(index=False))
    atomic_write_text(out / f"gpu_figures_{slug}.md", summary(outcomes, skipped, where, out, slug, sizes))
    for outcome in outcomes:
        print(f"{outcome.step:22s} {outcome.status:32s} {outcome.wall_s:7.1f} s  {outcome.command}")
    print(f"wrote {out / f'gpu_figures_{slug}.md'}")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
