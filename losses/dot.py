"""Zhao, Song & Cui, "DOT: A Distillation-Oriented Trainer" (ICCV 2023).

Not a new loss but a new step: the task (CE) and the distillation gradients of each parameter
keep momentum buffers of their own, the distillation one with more momentum (``beta + delta``)
and the task one with less (``beta - delta``), so the distillation loss dominates the
optimization. ``DistillationOrientedSGD`` is that optimizer; ``DOT`` is KD trained with it.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from losses.base import LossContext, optimized, register_loss
from losses.checks import fraction, non_negative
from losses.kd import KD
from registry import ConfigError


class DistillationOrientedSGD(torch.optim.Optimizer):
    """SGD with one momentum buffer for the task gradient and one for the distillation gradient.

    ``step(distillation_grads)`` reads each parameter's task gradient from ``.grad`` and its
    distillation gradient from ``distillation_grads`` (aligned with the optimizer's parameters,
    None where the distillation loss does not reach it). A parameter with both gradients moves by
    ``lr * (m_task + m_distill)`` where

    * ``m_task <- momentum_task * m_task + (g_task + weight_decay * p)`` (weight decay on the task side only),
    * ``m_distill <- momentum_distill * m_distill + g_distill``;

    each buffer starts as its first gradient (no dampening). A parameter reached by one loss only
    gets that side, at the mean of the two momenta, with weight decay. State per parameter:
    ``task_momentum`` and ``distillation_momentum``, so ``state_dict`` resumes it exactly.
    """

    def __init__(self, params: Iterable[nn.Parameter], *, lr: float, momentum_task: float, momentum_distill: float,
                 weight_decay: float):
        defaults = dict(lr=lr, momentum_task=fraction("dot: momentum - delta", momentum_task),
                        momentum_distill=fraction("dot: momentum + delta", momentum_distill),
                        weight_decay=non_negative("dot: weight_decay", weight_decay))
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, distillation_grads: Sequence[Tensor | None]) -> None:
        grads = iter(distillation_grads)
        for group in self.param_groups:
            both = (group["momentum_task"], group["momentum_distill"])
            alone = sum(both) / 2
            for p in group["params"]:
                g_task, g_distill = p.grad, next(grads)
                present = (g_task is not None) + (g_distill is not None)
                if g_task is not None:
                    self._move(p, "task_momentum", g_task.add(p, alpha=group["weight_decay"]),
                               both[0] if present == 2 else alone, group["lr"])
                if g_distill is not None:
                    decayed = g_distill if present == 2 else g_distill.add(p, alpha=group["weight_decay"])
                    self._move(p, "distillation_momentum", decayed, both[1] if present == 2 else alone, group["lr"])

    def _move(self, p: nn.Parameter, key: str, grad: Tensor, momentum: float, lr: float) -> None:
        state = self.state[p]
        if key in state:
            state[key].mul_(momentum).add_(grad)
        else:
            state[key] = grad.clone()
        p.add_(state[key], alpha=-lr)


@register_loss("dot")
class DOT(KD):
    """KD trained by the distillation-oriented trainer: its own momentum for each of the two gradients.

    Each step runs two backward passes, the distillation loss first (its gradients kept aside) and
    the task loss second, then one ``DistillationOrientedSGD`` step with the recipe's momentum
    ``beta`` split into ``beta - delta`` (task) and ``beta + delta`` (distillation). Defaults: KD at
    T=4, CE 0.1, KD 0.9 (mdistiller ``CFG.KD``), ``delta`` 0.075 (configs/cifar100/dot/*.yaml).

    Reference implementation: megvii-research/mdistiller, mdistiller/engine/dot.py, mdistiller/engine/trainer.py (DOT)
    Deviations: a parameter only the distillation loss reaches (none in KD) gets weight decay from its first
    step; the authors' code skips it on that first step. Nesterov momentum is refused, as the authors define none.
    """

    description = "KD with the distillation-oriented trainer: separate task and KD momenta (Zhao et al. 2023)"

    def __init__(self, ctx: LossContext, *, T: float, delta: float):
        super().__init__(ctx, T=T)
        self.delta = non_negative("dot: delta", delta)

    def build_optimizer(self, params: list[nn.Parameter], *, lr: float, momentum: float, weight_decay: float,
                        nesterov: bool) -> torch.optim.Optimizer:
        if nesterov:
            raise ConfigError("dot: the distillation-oriented trainer has no Nesterov form; "
                              "use a recipe with nesterov = false")
        return DistillationOrientedSGD(params, lr=lr, momentum_task=momentum - self.delta,
                                       momentum_distill=momentum + self.delta, weight_decay=weight_decay)

    def optimizer_step(self, optimizer: torch.optim.Optimizer, task: Tensor, distillation: Tensor,
                       average_gradients: Callable[[list[nn.Parameter]], None]) -> None:
        params = optimized(optimizer)
        optimizer.zero_grad(set_to_none=True)
        distillation.backward(retain_graph=True)
        average_gradients(params)
        distillation_grads = [p.grad for p in params]
        optimizer.zero_grad(set_to_none=True)
        task.backward()
        average_gradients(params)
        optimizer.step(distillation_grads)
