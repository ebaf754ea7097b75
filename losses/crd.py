"""Tian, Krishnan & Isola, "Contrastive Representation Distillation" (ICLR 2020)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, Preparation, register_loss
from losses.checks import choice, count, fraction, non_negative, positive
from losses.numerics import fp32
from registry import ConfigError


MEMORY_INITS = ("uniform", "normalised")
NEGATIVE_POOLS = ("other_classes", "other_examples")


def sample_negatives(allowed: Tensor, k: int, pool: int, generator: torch.Generator) -> Tensor:
    """``k`` training-set positions per row, uniform over the row's ``allowed`` (B x N) positions.

    Without replacement (the ``k`` smallest of i.i.d. uniform keys) when every row allows at
    least ``pool >= k`` positions, as RepDistiller's CIFAR loader draws; with replacement
    otherwise (small or subsampled datasets). Costs one B x N random draw and top-k per step.
    """
    if k <= pool:
        keys = torch.rand(allowed.shape, generator=generator, device=allowed.device)
        keys.masked_fill_(~allowed, 2.0)  # above every uniform key: never among the k smallest
        return keys.topk(k, dim=1, largest=False).indices
    return torch.multinomial(allowed.float(), k, replacement=True, generator=generator)


@fp32
def nce_loss(anchor: Tensor, memory: Tensor, candidates: Tensor, z: Tensor,
             temperature: float, eps: float) -> tuple[Tensor, Tensor]:
    """Eq. 18 of the paper for one anchor side; returns (loss, normalisation constant Z).

    ``candidates[:, 0]`` is the positive, the rest are the K negatives; their scores are gathered
    from one B x N product with the whole bank (smaller than RepDistiller's B x (K+1) x d gather).
    h = P / (P + K / N + eps) and 1 - h = (K / N) / (P + K / N + eps) with P = exp(v . m / tau) / Z
    (RepDistiller ``crd/criterion.py`` adds eps=1e-7 to both denominators; eps=0 is the exact NCE).
    Z is estimated once, on the first batch, as N * mean(exp(v . m / tau)) (RepDistiller
    ``crd/memory.py``) and kept. Written in log space, so exp(1/tau) never overflows.
    """
    num_train, k = memory.shape[0], candidates.shape[1] - 1
    scores = (anchor @ memory.T).gather(1, candidates) / temperature
    z = torch.where(z > 0, z, scores.detach().exp().mean() * num_train)
    log_p = scores - z.log()
    log_noise = math.log(k / num_train)  # log(K * P_n) with the uniform noise distribution P_n = 1/N
    log_denominator = torch.logaddexp(log_p, torch.tensor(math.log(k / num_train + eps), device=log_p.device))
    log_h_positive = log_p[:, 0] - log_denominator[:, 0]
    log_one_minus_h_negatives = log_noise - log_denominator[:, 1:]
    loss = -(log_h_positive.sum() + log_one_minus_h_negatives.sum()) / anchor.shape[0]
    return loss, z


class Embed(nn.Module):
    """Linear projection to the contrastive space, then L2 normalisation (RepDistiller ``Embed``)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.linear(x).float(), dim=1)


@register_loss("crd")
class CRD(DistillLoss):
    """NCE between student and teacher embeddings, with negatives from a momentum memory bank.

    Both pooled penultimate embeddings go through a linear + L2-norm head to ``embed_dim`` (128).
    Two memory banks hold one row per training example (``ctx.num_train``): the student's and the
    teacher's embeddings, updated after each step as row <- normalise(m * row + (1 - m) * v) with
    momentum ``m`` (0.5). Each example is contrasted against its own memory row (positive) and
    ``negatives`` others (K=16384, drawn with ``batch.generator``) at temperature ``tau`` (0.07):
    once with the student embedding against the teacher bank, once with the teacher embedding
    against the student bank, returned as two terms. Banks, Z and the training labels are
    buffers, so a checkpoint carries them. Defaults follow RepDistiller: ``eps`` 1e-7 in the NCE
    denominators (see ``nce_loss``); ``memory_init`` "uniform" leaves bank rows uniform in
    +-sqrt(3 / d), not normalised ("normalised" normalises them); ``negatives_from``
    "other_classes" draws negatives outside the anchor's class, as RepDistiller's CIFAR loader
    does, reading the training labels in ``prepare`` (one pass over the data, no model run) and
    from each training batch (the examples a pass drops with its ragged last batch);
    "other_examples" (and "other_classes" before ``prepare``) draws over every example but the anchor.

    Reference implementation: HobbitLong/RepDistiller, crd/criterion.py, crd/memory.py,
    dataset/cifar100.py (CIFAR100InstanceSample, mode "exact").
    Deviations: negatives are drawn with replacement for every row of a step once one class
    leaves fewer than K others (RepDistiller decides per class; not met on CIFAR-100); until its
    first training step, an example the preparation pass dropped (at most a batch) may be a
    negative of its own class.
    """

    needs = frozenset({Need.EMBEDDING, Need.INDICES, Need.LABELS})
    batchwise = True
    description = "contrastive representation distillation with a memory bank (Tian et al. 2020)"

    def __init__(self, ctx: LossContext, *, embed_dim: int, negatives: int, temperature: float, momentum: float,
                 eps: float, memory_init: str, negatives_from: str):
        super().__init__(ctx)
        if ctx.num_train < 2:
            raise ConfigError(f"crd needs a training set of at least 2 examples, got {ctx.num_train}")
        embed_dim = count("crd: embed_dim", embed_dim, 1)
        self.negatives = count("crd: negatives", negatives, 1)
        self.temperature = positive("crd: temperature", temperature)
        self.momentum = fraction("crd: momentum", momentum)
        self.eps = non_negative("crd: eps", eps)
        self.memory_init = choice("crd: memory_init", memory_init, MEMORY_INITS)
        self.negatives_from = choice("crd: negatives_from", negatives_from, NEGATIVE_POOLS)
        self.embed_s = Embed(ctx.student.embedding, embed_dim)
        self.embed_t = Embed(ctx.teacher.embedding, embed_dim)
        bound = math.sqrt(3 / embed_dim)
        for name in ("memory_s", "memory_t"):
            rows = torch.empty(ctx.num_train, embed_dim).uniform_(-bound, bound)
            self.register_buffer(name, F.normalize(rows, dim=1) if self.memory_init == "normalised" else rows)
        self.register_buffer("z_s", torch.tensor(-1.0))  # Z of the student-anchor side; <= 0: not set yet
        self.register_buffer("z_t", torch.tensor(-1.0))
        self.register_buffer("train_labels", torch.full((ctx.num_train,), -1))  # -1: not read (yet)
        self._count_pool()
        self.register_load_state_dict_post_hook(lambda module, _: module._count_pool())

    def prepare(self, prep: Preparation) -> None:
        if self.negatives_from == "other_classes":
            for _, labels, indices in prep.batches():
                self._record_labels(indices, labels)
            self._count_pool()

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> dict[str, Tensor]:
        v_s, v_t = self.embed_s(student.embedding), self.embed_t(teacher.embedding)
        index = batch.indices
        negatives = sample_negatives(self._allowed(index), self.negatives, self.pool, batch.generator)
        candidates = torch.cat([index[:, None], negatives], dim=1)
        student_anchor, z_s = nce_loss(v_s, self.memory_t, candidates, self.z_s, self.temperature, self.eps)
        teacher_anchor, z_t = nce_loss(v_t, self.memory_s, candidates, self.z_t, self.temperature, self.eps)
        with torch.no_grad():
            if self.labels_read:  # the few a preparation pass dropped
                self._record_labels(index, batch.labels)
            self.z_s.copy_(z_s)
            self.z_t.copy_(z_t)
            # Out of place: the scores above saved the old banks for their backward pass.
            self.memory_s = self._updated(self.memory_s, index, v_s)
            self.memory_t = self._updated(self.memory_t, index, v_t)
        return {"student_anchor": student_anchor, "teacher_anchor": teacher_anchor}

    def _record_labels(self, index: Tensor, labels: Tensor) -> None:
        self.train_labels[index.to(self.train_labels.device)] = labels.to(self.train_labels.device)

    def _count_pool(self) -> None:
        """A lower bound on the negatives any anchor may draw from (a host int, so sampling never syncs).

        With no label read every example but the anchor is allowed; otherwise the examples whose
        label is still unread might all turn out to belong to the largest class.
        """
        known = self.train_labels[self.train_labels >= 0]
        self.labels_read = len(known) > 0
        if not self.labels_read:
            self.pool = self.ctx.num_train - 1
            return
        unread = self.ctx.num_train - len(known)
        self.pool = max(self.ctx.num_train - int(torch.bincount(known).max()) - unread, 0)

    def _allowed(self, index: Tensor) -> Tensor:
        """B x N: which training examples may be a negative of each anchor (never itself, nor its class once read)."""
        labels = self.train_labels.to(index.device)
        allowed = (labels[None, :] != labels[index][:, None]) | (labels[None, :] < 0)
        return allowed.scatter(1, index[:, None], False)

    def _updated(self, memory: Tensor, index: Tensor, embedding: Tensor) -> Tensor:
        rows = memory[index] * self.momentum + embedding.detach().float() * (1 - self.momentum)
        return memory.index_copy(0, index, F.normalize(rows, dim=1))
