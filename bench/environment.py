"""Where a number was measured: device name and library versions, recorded with every result."""

from __future__ import annotations

import os
import platform
from importlib import metadata

import timm
import torch
from registry import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; an explicit device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}'; expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' requested but CUDA is not available; expected auto or cpu")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device '{name}'; expected auto, cpu, cuda or cuda:N")
    return device


def cpu_name() -> str:
    """The CPU model, the cores this process may use and the vector instructions torch's kernels use,
    e.g. ``AMD EPYC 7B13 (2 cores, AVX2)``."""
    try:
        with open("/proc/cpuinfo") as info:
            model = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model} ({len(os.sched_getaffinity(0))} cores, {torch.backends.cpu.get_cpu_capability()})"


def device_name(device: torch.device) -> str:
    """The GPU model, or the CPU model with its core count: floating-point kernels differ between them."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


LIBRARIES = {"numpy_version": "numpy", "pot_version": "POT"}  # beside torch and timm, whose kernels compute the numbers


def _installed(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def versions() -> dict[str, str]:
    """The versions that can change a number's last digits: the same ones are needed for a bitwise rerun."""
    return {"torch_version": torch.__version__, "timm_version": timm.__version__,
            **{column: _installed(name) for column, name in LIBRARIES.items()},
            "python_version": platform.python_version(), "distillbench_version": _installed("distillbench")}
