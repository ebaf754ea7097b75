"""Tian, Krishnan & Isola, "Contrastive Representation Distillation" (ICLR 2020)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losses.base import Batch, DistillLoss, LossContext, Need, Outputs, register_loss
from losses.checks import count, fraction, positive
from losses.numerics import fp32
from registry import ConfigError


def sample_negatives(anchors: Tensor, num_train: int, k: int, generator: torch.Generator) -> Tensor:
    """``k`` training-set positions per anchor, uniform over the other ``num_train - 1`` examples.

    Without replacement (the ``k`` smallest of i.i.d. uniform keys) when ``k <= num_train - 1``, as
    RepDistiller's CIFAR loader draws; with replacement when the training set is smaller than
    ``k`` (small or subsampled datasets), as its ImageNet loader always draws. The anchor itself is
    never a negative. RepDistiller also leaves out the anchor's whole class, which needs every
    label of the training set up front; this draws over all other examples (with 100 classes, ~1%
    of negatives share the anchor's class). Costs one B x N random draw and top-k per step.
    """
    rows, device = anchors.shape[0], anchors.device
    if k <= num_train - 1:
        keys = torch.rand(rows, num_train, generator=generator, device=device)
        keys.scatter_(1, anchors[:, None], 2.0)  # above every uniform key: never among the k smallest
        return keys.topk(k, dim=1, largest=False).indices
    draws = torch.randint(num_train - 1, (rows, k), generator=generator, device=device)
    return draws + (draws >= anchors[:, None]).long()  # skip over the anchor


@fp32
def nce_loss(anchor: Tensor, memory: Tensor, candidates: Tensor, z: Tensor,
             temperature: float) -> tuple[Tensor, Tensor]:
    """Eq. 18 of the paper for one anchor side; returns (loss, normalisation constant Z).

    ``candidates[:, 0]`` is the positive, the rest are the K negatives; their scores are gathered
    from one B x N product with the whole bank (smaller than RepDistiller's B x (K+1) x d gather).
    h = P / (P + K / N) with P = exp(v . m / tau) / Z; Z is estimated once, on the first batch, as
    N * mean(exp(v . m / tau)) (RepDistiller ``crd/memory.py``) and kept. Written in log space, so
    exp(1/tau) never overflows and log h never meets log 0 (no eps guard needed).
    """
    num_train, k = memory.shape[0], candidates.shape[1] - 1
    scores = (anchor @ memory.T).gather(1, candidates) / temperature
    z = torch.where(z > 0, z, scores.detach().exp().mean() * num_train)
    log_p = scores - z.log()
    log_noise = math.log(k / num_train)  # log(K * P_n) with the uniform noise distribution P_n = 1/N
    log_h_positive = -F.softplus(log_noise - log_p[:, 0])
    log_one_minus_h_negatives = -F.softplus(log_p[:, 1:] - log_noise)
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
    ``negatives`` others (K=16384, see ``sample_negatives``; drawn with ``batch.generator``) at
    temperature ``tau`` (0.07): once with the student embedding against the teacher bank, once
    with the teacher embedding against the student bank, returned as two terms. Defaults: CRD
    paper §4 and RepDistiller ``train_student.py``. Banks and Z are buffers, so a checkpoint
    carries them. Bank rows start uniform in +-sqrt(3 / d) as in RepDistiller, then normalised.
    """

    needs = frozenset({Need.EMBEDDING, Need.INDICES})
    description = "contrastive representation distillation with a memory bank (Tian et al. 2020)"

    def __init__(self, ctx: LossContext, *, embed_dim: int, negatives: int, temperature: float, momentum: float):
        super().__init__(ctx)
        if ctx.num_train < 2:
            raise ConfigError(f"crd needs a training set of at least 2 examples, got {ctx.num_train}")
        embed_dim = count("crd: embed_dim", embed_dim, 1)
        self.negatives = count("crd: negatives", negatives, 1)
        self.temperature = positive("crd: temperature", temperature)
        self.momentum = fraction("crd: momentum", momentum)
        self.embed_s = Embed(ctx.student.embedding, embed_dim)
        self.embed_t = Embed(ctx.teacher.embedding, embed_dim)
        bound = math.sqrt(3 / embed_dim)
        for name in ("memory_s", "memory_t"):
            rows = torch.empty(ctx.num_train, embed_dim).uniform_(-bound, bound)
            self.register_buffer(name, F.normalize(rows, dim=1))
        self.register_buffer("z_s", torch.tensor(-1.0))  # Z of the student-anchor side; <= 0: not set yet
        self.register_buffer("z_t", torch.tensor(-1.0))

    def forward(self, student: Outputs, teacher: Outputs, batch: Batch) -> dict[str, Tensor]:
        v_s, v_t = self.embed_s(student.embedding), self.embed_t(teacher.embedding)
        index = batch.indices
        negatives = sample_negatives(index, self.ctx.num_train, self.negatives, batch.generator)
        candidates = torch.cat([index[:, None], negatives], dim=1)
        student_anchor, z_s = nce_loss(v_s, self.memory_t, candidates, self.z_s, self.temperature)
        teacher_anchor, z_t = nce_loss(v_t, self.memory_s, candidates, self.z_t, self.temperature)
        with torch.no_grad():
            self.z_s.copy_(z_s)
            self.z_t.copy_(z_t)
            # Out of place: the scores above saved the old banks for their backward pass.
            self.memory_s = self._updated(self.memory_s, index, v_s)
            self.memory_t = self._updated(self.memory_t, index, v_t)
        return {"student_anchor": student_anchor, "teacher_anchor": teacher_anchor}

    def _updated(self, memory: Tensor, index: Tensor, embedding: Tensor) -> Tensor:
        rows = memory[index] * self.momentum + embedding.detach().float() * (1 - self.momentum)
        return memory.index_copy(0, index, F.normalize(rows, dim=1))
