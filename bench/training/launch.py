"""``bench run --nproc N``: the same command started again under ``torchrun`` with N processes on this machine."""

from __future__ import annotations

import subprocess
import sys


def without_option(args: list[str], option: str) -> list[str]:
    """``args`` less ``option VALUE`` and ``option=VALUE``."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(f"{option}="):
            kept.append(arg)
    return kept


def relaunch_under_torchrun(nproc: int, args: list[str]) -> int:
    """Run ``bench <args>`` (less ``--nproc``) as ``torchrun --standalone --nproc-per-node N``; its exit code."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "bench", *without_option(args, "--nproc")]
    return subprocess.run(command).returncode
