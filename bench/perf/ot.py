"""``bench perf ot``: forward + backward time of each OT distance of ``losses.ot.functional``,
against POT's torch backend (and geomloss when installed), with each value's error.

Inputs are two clouds of n L2-normalised Gaussian points in d dimensions (the scale of the OT
losses' embeddings), float32 on the device under test, squared-Euclidean cost. Every
implementation gets the same work: the same eps and iteration count (POT's convergence test
disabled), the same projections. Each value is compared with a float64 CPU reference from POT:
the same quantity for Sinkhorn, its divergence, sliced and Gaussian W2; the exact EMD for EMD
and IPOT (IPOT approximates it). The time of a cell is the fastest of ``repeats`` calls after one
warm-up (the least disturbed by other processes on a shared machine; the median is recorded too),
the implementations taking turns call by call; CUDA times come from events around a synchronised
call. This measures; it asserts nothing.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
import ot
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor

from bench.report.plots import palette, save
from losses.ot import functional as otf

EPS, ITERS, PROJECTIONS, REG = 0.05, 100, 128, 1e-6
SETTINGS = {"cost": "sqeuclidean", "eps": EPS, "iters": ITERS, "projections": PROJECTIONS, "reg": REG,
            "ipot": {"beta": 0.5, "outer_iters": 50, "inner_iters": 1}}
OURS, POT, GEOMLOSS = "distillbench", "POT", "geomloss"


Reference = Callable[[np.ndarray, np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class Method:
    """One OT quantity: how each implementation computes it, and its float64 POT reference.

    ``own_references`` maps an implementation that returns another quantity (geomloss's dual
    objective) to the reference of that quantity, with its description.
    """

    name: str
    implementations: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]]  # (x, y, projections) -> value
    reference: Reference
    reference_kind: str
    own_references: dict[str, tuple[Reference, str]] = field(default_factory=dict)

    def reference_of(self, implementation: str) -> tuple[Reference, str]:
        return self.own_references.get(implementation, (self.reference, self.reference_kind))


def _uniform(x: Tensor) -> Tensor:
    return torch.full((x.shape[0],), 1.0 / x.shape[0], dtype=x.dtype, device=x.device)


def _pot_sinkhorn(x, y):
    return ot.sinkhorn2(_uniform(x), _uniform(y), ot.dist(x, y), EPS, method="sinkhorn_log", numItermax=ITERS,
                        stopThr=0, warn=False)


def _np_sinkhorn(x, y):
    n, m = len(x), len(y)
    return ot.sinkhorn2(np.full(n, 1 / n), np.full(m, 1 / m), ot.dist(x, y), EPS, method="sinkhorn_log",
                        numItermax=ITERS, stopThr=0, warn=False)


def _np_entropic_objective(x, y):
    """<P, C> + eps KL(P | a b^T) at POT's plan: the value of the entropic problem, which geomloss returns."""
    n, m = len(x), len(y)
    a, b, M = np.full(n, 1 / n), np.full(m, 1 / m), ot.dist(x, y)
    P = ot.sinkhorn(a, b, M, EPS, method="sinkhorn_log", numItermax=ITERS, stopThr=0, warn=False)
    mass = P > 0
    return float((P * M).sum() + EPS * (P[mass] * np.log(P[mass] / np.outer(a, b)[mass])).sum())


def _np_emd(x, y, _):
    return ot.emd2(np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y)), ot.dist(x, y), numItermax=10_000_000)


def _geomloss_sinkhorn(debias: bool):
    """geomloss's tensorised Sinkhorn, with its own eps-scaling schedule (ratio 0.9).

    geomloss's cost is ``|x - y|^2 / 2`` with regularisation ``blur^2``: twice its value is the
    problem on ``|x - y|^2`` at ``eps = 2 blur^2``, so ``blur = sqrt(eps / 2)``. It returns the dual
    (entropic) objective, not the transport cost, and its error is measured against that.
    """
    from geomloss import SamplesLoss

    loss = SamplesLoss("sinkhorn", p=2, blur=(EPS / 2) ** 0.5, debias=debias, scaling=0.9, backend="tensorized")
    return lambda x, y, _: 2 * loss(x, y)


def methods() -> list[Method]:
    ipot = SETTINGS["ipot"]
    table = [
        Method("emd", {OURS: lambda x, y, _: otf.emd(x, y),
                       POT: lambda x, y, _: ot.emd2(_uniform(x), _uniform(y), ot.dist(x, y), numItermax=10_000_000)},
               _np_emd, "POT emd2, float64"),
        Method("ipot", {OURS: lambda x, y, _: otf.ipot(x, y, cost="sqeuclidean", **ipot)},
               _np_emd, "exact EMD (POT emd2, float64)"),
        Method("sinkhorn", {OURS: lambda x, y, _: otf.sinkhorn(x, y, eps=EPS, iters=ITERS),
                            POT: lambda x, y, _: _pot_sinkhorn(x, y)},
               lambda x, y, _: _np_sinkhorn(x, y), f"POT sinkhorn2 (log), {ITERS} iterations, float64"),
        Method("sinkhorn_divergence",
               {OURS: lambda x, y, _: otf.sinkhorn_divergence(x, y, eps=EPS, iters=ITERS),
                POT: lambda x, y, _: ot.bregman.empirical_sinkhorn_divergence(
                    x, y, EPS, numIterMax=ITERS, stopThr=0, method="sinkhorn_log", warn=False)},
               lambda x, y, _: _np_sinkhorn(x, y) - (_np_sinkhorn(x, x) + _np_sinkhorn(y, y)) / 2,
               f"POT sinkhorn2 (log) debiased, {ITERS} iterations, float64"),
        Method("sliced_wasserstein",
               {OURS: lambda x, y, P: otf.sliced_wasserstein(x, y, projections=P),
                POT: lambda x, y, P: ot.sliced_wasserstein_distance(x, y, projections=P.T) ** 2},
               lambda x, y, P: ot.sliced_wasserstein_distance(x, y, projections=P.T) ** 2,
               f"POT sliced_wasserstein_distance^2, same {PROJECTIONS} projections, float64"),
        Method("max_sliced_wasserstein",
               {OURS: lambda x, y, P: otf.max_sliced_wasserstein(x, y, projections=P),
                POT: lambda x, y, P: ot.max_sliced_wasserstein_distance(x, y, projections=P.T) ** 2},
               lambda x, y, P: ot.max_sliced_wasserstein_distance(x, y, projections=P.T) ** 2,
               f"POT max_sliced_wasserstein_distance^2, same {PROJECTIONS} projections, float64"),
        Method("gaussian_w2",
               {OURS: lambda x, y, _: otf.gaussian_w2(x, y, reg=REG),
                POT: lambda x, y, _: ot.gaussian.empirical_bures_wasserstein_distance(x, y, reg=REG) ** 2},
               lambda x, y, _: ot.gaussian.empirical_bures_wasserstein_distance(x, y, reg=REG) ** 2,
               "POT empirical_bures_wasserstein_distance^2, float64"),
    ]
    if geomloss_version() is not None:
        objective = _np_entropic_objective
        entropic = {
            "sinkhorn": (lambda x, y, _: objective(x, y),
                         f"entropic objective at POT's plan, {ITERS} iterations, float64"),
            "sinkhorn_divergence": (lambda x, y, _: objective(x, y) - (objective(x, x) + objective(y, y)) / 2,
                                    f"debiased entropic objective at POT's plans, {ITERS} iterations, float64"),
        }
        for method in table:
            if method.name in entropic:
                method.implementations[GEOMLOSS] = _geomloss_sinkhorn(debias=method.name == "sinkhorn_divergence")
                method.own_references[GEOMLOSS] = entropic[method.name]
    return table


def geomloss_version() -> str | None:
    try:
        return metadata.version("geomloss")
    except metadata.PackageNotFoundError:
        return None


def _inputs(n: int, d: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(n * 100_003 + d)
    x, y = (torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1) for _ in range(2))
    projections = torch.nn.functional.normalize(torch.randn(PROJECTIONS, d, generator=g, dtype=torch.float64), dim=1)
    return x, y, projections


def time_calls(fns: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]], x: Tensor, y: Tensor, P: Tensor,
               repeats: int) -> dict[str, tuple[list[float], float]]:
    """Per implementation: milliseconds of ``repeats`` forward + backward calls after one warm-up,
    and the value. The implementations take turns in each round, so a slow spell of a shared machine
    slows them alike and their ratio holds."""
    cuda = x.device.type == "cuda"

    def call(fn) -> Tensor:
        xg, yg = x.detach().requires_grad_(), y.detach().requires_grad_()
        value = fn(xg, yg, P)
        value.backward()
        return value

    def timed(fn) -> float:
        if not cuda:
            start = time.perf_counter()
            call(fn)
            return (time.perf_counter() - start) * 1000
        torch.cuda.synchronize(x.device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call(fn)
        end.record()
        torch.cuda.synchronize(x.device)
        return start.elapsed_time(end)

    values = {name: call(fn).item() for name, fn in fns.items()}
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn))
    return {name: (times[name], values[name]) for name in fns}


def skipped(method: str, n: int, d: int, patterns: list[tuple[str, str, str]]) -> bool:
    """Whether a ``METHOD:N:D`` pattern (each part may be ``*``) excludes this cell."""
    return any(all(p in ("*", str(v)) for p, v in zip(pattern, (method, n, d))) for pattern in patterns)


def run_benchmark(sizes, dims, method_names, skip, device: torch.device, repeats: int, context: dict, log=print) -> pd.DataFrame:
    """One row per (method, implementation, n, d); ``context`` (device name, versions, command) on every row."""
    rows = []
    chosen = [m for m in methods() if m.name in method_names]
    for d in dims:
        for n in sizes:
            x64, y64, P64 = _inputs(n, d, torch.device("cpu"))
            x, y, P = (t.to(device, torch.float32) for t in (x64, y64, P64))
            for method in (m for m in chosen if not skipped(m.name, n, d, skip)):
                references = {}  # reference kind -> value, each computed once per cell
                for implementation, (times, value) in time_calls(method.implementations, x, y, P, repeats).items():
                    compute_reference, reference_kind = method.reference_of(implementation)
                    if reference_kind not in references:
                        references[reference_kind] = float(compute_reference(x64.numpy(), y64.numpy(), P64.numpy()))
                    reference = references[reference_kind]
                    rows.append({**context, "method": method.name, "implementation": implementation, "n": n, "d": d,
                                 "repeats": repeats, "time_ms": min(times), "time_ms_median": statistics.median(times),
                                 "value": value, "reference": reference,
                                 "rel_error": abs(value - reference) / abs(reference) if reference else abs(value),
                                 "reference_kind": reference_kind, "settings": json.dumps(SETTINGS, sort_keys=True)})
                    log(f"{method.name:24s} {implementation:12s} n={n:5d} d={d:5d} {min(times):10.2f} ms")
    return pd.DataFrame(rows)


def device_slug(device: torch.device, name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", f"{device.type} {name}".lower()).strip("-")


def speed_ratios(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (method, d, n): our time and POT's, POT time / our time (> 1: we are faster), and value errors."""
    def per_implementation(values: str) -> pd.DataFrame:
        table = frame.pivot_table(index=["method", "d", "n"], columns="implementation", values=values, sort=False)
        return table.reindex(columns=[OURS, POT])

    times, errors = per_implementation("time_ms"), per_implementation("rel_error")
    return pd.DataFrame({
        "ours_ms": times[OURS], "pot_ms": times[POT], "pot_over_ours": times[POT] / times[OURS],
        "ours_rel_error": errors[OURS], "pot_rel_error": errors[POT],
    }).reset_index()


def plot(frame: pd.DataFrame, title: str, stem: Path) -> list[Path]:
    """Time vs n per method (ours solid, POT dashed, geomloss dotted), one panel per d, log-log."""
    dims, sizes = sorted(frame["d"].unique()), sorted(frame["n"].unique())
    colours = palette(frame["method"])
    styles = {OURS: "-", POT: "--", GEOMLOSS: ":"}
    fig = Figure(figsize=(4.6 * len(dims) + 2.6, 4.4), layout="constrained")
    axes = fig.subplots(1, len(dims), sharey=True, squeeze=False)[0]
    handles = {}
    for ax, d in zip(axes, dims):
        for (method, implementation), rows in frame[frame["d"] == d].groupby(["method", "implementation"], sort=False):
            rows = rows.sort_values("n")
            label = f"{method} ({implementation})"
            (handles[label],) = ax.plot(rows["n"], rows["time_ms"], styles[implementation], marker="o", markersize=3,
                                        color=colours[method], label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.set_title(f"d = {d}")
        ax.set_xlabel("points per cloud, n = m")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("forward + backward time (ms)")
    fig.legend(handles=list(handles.values()), loc="outside right upper", fontsize=8)
    fig.suptitle(f"OT distances, float32, forward + backward: {title}")
    return save(fig, stem)
