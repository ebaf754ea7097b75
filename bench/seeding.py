"""Every random stream of a run derives from (run seed, purpose): reproducible and independent.

The batch order of epoch 3 is the same for every loss of a comparison and after a resume,
because it is a pure function of the seed and the epoch, not of what ran before it.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *purpose: object) -> int:
    """A 63-bit seed that depends only on ``seed`` and the ``purpose`` parts."""
    text = "/".join(str(part) for part in (seed, *purpose))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def generator(device: torch.device | str, seed: int, *purpose: object) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded from ``derive_seed(seed, *purpose)``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, *purpose))
    return gen
