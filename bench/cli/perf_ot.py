"""``bench perf ot``: time the OT distances against POT and write CSV, plot and a ratio table."""

from __future__ import annotations

import math
import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer

from bench.cli.app import console, invocation, perf_app
from registry import ConfigError

ALL_METHODS = "emd,ipot,sinkhorn,sinkhorn_divergence,sliced_wasserstein,max_sliced_wasserstein,gaussian_w2"


def integers(option: str, text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 2:
        raise ConfigError(f"--{option} expects comma-separated integers >= 2 such as 64,128; got '{text}'")
    return values


def cells(text: str | None) -> list[tuple[str, str, str]]:
    patterns = [tuple(part.strip().split(":")) for part in (text or "").split(",") if part.strip()]
    if any(len(p) != 3 for p in patterns):
        raise ConfigError("--skip expects comma-separated METHOD:N:D cells (each may be *), "
                          f"such as gaussian_w2:*:2048; got '{text}'")
    return patterns


def cell(value: float, spec: str) -> str:
    """A table cell; '-' where there is no value (a method without a POT counterpart)."""
    return "-" if math.isnan(value) else format(value, spec)


@perf_app.command("ot")
def perf_ot(
    sizes: Annotated[str, typer.Option(help="Points per cloud n = m, comma-separated.")] = "64,128,256,512,1024",
    dims: Annotated[str, typer.Option(help="Point dimensions d, comma-separated.")] = "128,512,2048",
    methods: Annotated[str, typer.Option(help="OT distances to time, comma-separated.")] = ALL_METHODS,
    skip: Annotated[Optional[str], typer.Option(help="Cells not to run, METHOD:N:D with * wildcards, comma-separated.")] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda, cuda:N.")] = "auto",
    repeats: Annotated[int, typer.Option(help="Timed calls per cell after one warm-up; the fastest is reported.")] = 5,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch (default: torch's own choice).")] = None,
    out: Annotated[Path, typer.Option(help="Directory for ot_<device>.csv and its plot.")] = Path("results/perf"),
) -> None:
    """Forward + backward time and value error of each OT distance vs POT (and geomloss when installed)."""
    import ot
    import torch
    from rich.table import Table

    from bench.environment import device_name, resolve_device
    from bench.perf import ot as bench_ot

    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = sorted(set(chosen) - set(ALL_METHODS.split(",")))
    if unknown or not chosen:
        raise ConfigError(f"unknown OT method {', '.join(unknown) or 'none'}; expected one of: {ALL_METHODS.replace(',', ', ')}")
    if repeats < 1 or (threads is not None and threads < 1):
        raise ConfigError(f"--repeats and --threads must be >= 1, got {repeats} and {threads}")
    if threads is not None:
        torch.set_num_threads(threads)
    n_values, d_values, patterns = integers("sizes", sizes), integers("dims", dims), cells(skip)
    target = resolve_device(device)
    name = device_name(target)
    context = {"device": target.type, "device_name": name, "torch_version": torch.__version__, "pot_version": ot.__version__,
               "threads": torch.get_num_threads(),
               "geomloss_version": bench_ot.geomloss_version() or "not installed", "command": shlex.join(invocation)}
    if context["geomloss_version"] == "not installed":
        typer.echo("geomloss is not installed: timing distillbench and POT only")
    frame = bench_ot.run_benchmark(n_values, d_values, chosen, patterns, target, repeats, context,
                                   log=lambda line: typer.echo(line, err=True))
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"ot_{bench_ot.device_slug(target, name)}"
    frame.to_csv(f"{stem}.csv", index=False)
    where = f"{name}, {torch.get_num_threads()} thread(s)" if target.type == "cpu" else name
    written = [Path(f"{stem}.csv"), *bench_ot.plot(frame, where, stem)]

    table = Table("method", "d", "n", "ours ms", "POT ms", "POT / ours", "ours rel. err", "POT rel. err",
                  title=f"OT forward + backward, best of {repeats}: {name}")
    for row in bench_ot.speed_ratios(frame).itertuples():
        table.add_row(row.method, str(row.d), str(row.n), cell(row.ours_ms, ".2f"), cell(row.pot_ms, ".2f"),
                      cell(row.pot_over_ours, ".2f"), cell(row.ours_rel_error, ".1e"), cell(row.pot_rel_error, ".1e"))
    console().print(table)
    for path in written:
        typer.echo(f"wrote {path}")
