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
    try:
        with open("/proc/cpuinfo") as info:
            model = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model} ({len(os.sched_getaffinity(0))} cores)"


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


def versions() -> dict[str, str]:
    try:
        own = metadata.version("distillbench")
    except metadata.PackageNotFoundError:
        own = "0+unknown"
    return {"torch_version": torch.__version__, "timm_version": timm.__version__, "distillbench_version": own}
