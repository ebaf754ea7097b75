"""One cohort on N processes (``torchrun``): the same numbers as one process at the same global batch.

Every rank holds the whole cohort. Each global batch of the single-process order is cut into N equal
slices; rank r trains on slice r (``Shard`` in ``bench.data.stream``). Per step and per student:

* the teacher runs once on the rank's slice, shared by its students, as on one process;
* a loss declared ``batchwise`` (it relates examples to each other) sees the global batch: the
  harness gathers both models' outputs, labels and indices across ranks with gradient
  (``torch.distributed.nn.functional.all_gather``; its backward sums every rank's gradient of the
  slice), so the loss value, CRD's memory-bank update and the loss's own parameters' gradients are
  those of the single process, on every rank;
* each student's gradients (its loss's parameters included) are averaged across ranks in one
  flattened all-reduce before its optimizer step; with the summing gather above, the average is
  exactly the gradient of the single-process objective;
* BatchNorm normalises with the statistics of the global batch (``sync_batchnorm``): per-rank
  statistics would make N processes train a different model than one process.

Metrics are reduced across ranks; only rank 0 writes results, checkpoints and reports.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Iterator, TypeVar

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import Tensor, nn

from bench.data.stream import Shard
from losses.base import Batch, Outputs
from registry import ConfigError

T = TypeVar("T")
# Rank 0 may train a missing teacher alone while the other ranks wait for it at a barrier.
COLLECTIVE_TIMEOUT = timedelta(hours=24)


@dataclass(frozen=True)
class World:
    """The processes training one cohort; ``World()`` is the single process, where nothing is communicated."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def shard(self) -> Shard:
        return Shard(self.rank, self.size)

    def per_rank_batch(self, global_batch: int) -> int:
        """The slice of one global batch each rank trains on; the global batch must split evenly."""
        if global_batch % self.size:
            raise ConfigError(f"batch size {global_batch} does not split over {self.size} processes; "
                              f"expected a multiple of {self.size}")
        return global_batch // self.size

    def gather_outputs(self, outputs: Outputs) -> Outputs:
        """Every rank's outputs in global-batch order, with gradient back to this rank's slice."""
        if not self.distributed:
            return outputs
        return Outputs(
            logits=None if outputs.logits is None else _gather(outputs.logits),
            features=tuple(_gather(f) for f in outputs.features),
            embedding=None if outputs.embedding is None else _gather(outputs.embedding),
            preact_features=tuple(_gather(f) for f in outputs.preact_features),
            feature_map=None if outputs.feature_map is None else _gather(outputs.feature_map),
            strong=None if outputs.strong is None else self.gather_outputs(outputs.strong),
        )

    def gather_batch(self, batch: Batch) -> Batch:
        if not self.distributed:
            return batch
        return replace(batch, labels=_gather(batch.labels), indices=_gather(batch.indices))

    def average_gradients(self, parameters: list[nn.Parameter]) -> None:
        """Average the gradients of ``parameters`` over ranks, in one flattened all-reduce."""
        grads = [p.grad for p in parameters if p.grad is not None]
        if not self.distributed or not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.size
        for grad, part in zip(grads, flat.split([g.numel() for g in grads])):
            grad.copy_(part.view_as(grad))

    def sum(self, tensor: Tensor) -> Tensor:
        """Sum over ranks (counts, totals)."""
        if self.distributed:
            tensor = tensor.clone()
            dist.all_reduce(tensor)
        return tensor

    def mean(self, tensor: Tensor) -> Tensor:
        """Mean over ranks (each rank's mean over its equal slice -> the global mean)."""
        return self.sum(tensor) / self.size

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (decisions only rank 0 may take, such as claiming runs)."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. trains and caches a teacher); then the others (a cache hit)."""
        if not self.is_main:
            dist.barrier()
        yield
        if self.is_main and self.distributed:
            dist.barrier()


def _gather(tensor: Tensor) -> Tensor:
    return torch.cat(dist_nn.all_gather(tensor.contiguous()), dim=0)


def join_world(device: str) -> tuple[World, str]:
    """The world this process belongs to (from ``torchrun``'s environment) and its device.

    Without ``WORLD_SIZE`` (a plain ``bench run``) it is the single process and ``device`` as given.
    Under ``torchrun`` the process group is created here: NCCL with one GPU per process
    (``cuda:LOCAL_RANK``) when ``device`` is CUDA or auto with CUDA present, gloo on CPUs otherwise.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(), device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    on_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if on_gpu:
        if device not in ("auto", "cuda"):
            raise ConfigError(f"under torchrun each process takes the GPU of its LOCAL_RANK; expected --device cuda "
                              f"or auto, got {device}")
        device = f"cuda:{local}"
        torch.cuda.set_device(device)
    else:
        device = "cpu"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if on_gpu else "gloo", timeout=COLLECTIVE_TIMEOUT,
                                **({"device_id": torch.device(device)} if on_gpu else {}))
    return World(rank, size), device


def sync_batchnorm(module: nn.Module, world: World) -> nn.Module:
    """BatchNorm over the global batch: torch's ``SyncBatchNorm`` on GPUs, ``GlobalBatchNorm`` on CPUs
    (torch's has no CPU kernels). The state_dict keys stay the same, so checkpoints move between
    any numbers of processes."""
    if not world.distributed:
        return module
    device = next(module.parameters(), torch.empty(0)).device
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, GlobalBatchNorm):
            setattr(module, name, GlobalBatchNorm.like(child))
        else:
            sync_batchnorm(child, world)
    return module


class GlobalBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch, summed with gradient over the
    gloo ranks (two passes: mean, then biased variance, as ``F.batch_norm``); running variance unbiased."""

    @classmethod
    def like(cls, bn: nn.BatchNorm2d) -> "GlobalBatchNorm":
        new = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats,
                  device=bn.running_mean.device, dtype=bn.running_mean.dtype)
        new.load_state_dict(bn.state_dict())
        new.train(bn.training)
        return new

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized()):
            return super().forward(x)
        count = x.numel() // x.shape[1] * dist.get_world_size()
        # sums in float64, as torch's CPU batch norm accumulates: channels of almost no variance are
        # normalised by rsqrt(var + eps), which magnifies any rounding of var
        mean = (dist_nn.all_reduce(x.sum(dim=(0, 2, 3), dtype=torch.float64)) / count).to(x.dtype)
        centred = x - mean[None, :, None, None]
        var = (dist_nn.all_reduce(centred.square().sum(dim=(0, 2, 3), dtype=torch.float64)) / count).to(x.dtype)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                factor = self.momentum if self.momentum is not None else 1 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean, factor)
                self.running_var.lerp_(var * count / max(count - 1, 1), factor)
        out = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        return out * self.weight[None, :, None, None] + self.bias[None, :, None, None] if self.affine else out
