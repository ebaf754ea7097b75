"""Which stage of the student is compared with which stage of the teacher.

Stage indices come from recipe data and are resolved in each model separately (timm's
``forward_intermediates`` order: stem first, last stage last). Negative indices count back from
each model's last stage, so ``[-3, -2, -1]`` pairs the last three stages of student and teacher
even when the two models have different numbers of stages (a CIFAR ResNet has 4: stem + 3
groups; a timm ImageNet ResNet has 5: stem + 4).
"""

from __future__ import annotations

from typing import Sequence

from losses.base import LossContext, stage_index
from registry import ConfigError


def stage_pairs(ctx: LossContext, stages: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """``(student_stage, teacher_stage)`` positions for each entry of ``stages``, in order."""
    if isinstance(stages, (str, bytes)) or not isinstance(stages, Sequence) or not stages:
        raise ConfigError(f"stages must be a non-empty list of stage indices such as [-3, -2, -1], got {stages!r}")
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in stages):
        raise ConfigError(f"stages must be integers such as [-3, -2, -1], got {list(stages)}")
    pairs = tuple((stage_index(ctx.student, s), stage_index(ctx.teacher, s)) for s in stages)
    if len(set(pairs)) != len(pairs):
        raise ConfigError(f"stages {list(stages)} name the same stage twice")
    return pairs


def ascending_pairs(ctx: LossContext, stages: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """As ``stage_pairs``, for losses that relate each stage to the next one (FSP): order matters."""
    pairs = stage_pairs(ctx, stages)
    for model, position in (("student", 0), ("teacher", 1)):
        order = [p[position] for p in pairs]
        if order != sorted(order):
            raise ConfigError(f"stages {list(stages)} must go from earlier to later stages; "
                              f"in the {model} they resolve to {order}")
    return pairs
