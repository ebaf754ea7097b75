"""Class-to-class similarity from a frozen teacher, the ground of logit-level OT (WKD-L).

Lv, Yang & Li (NeurIPS 2024) model the interrelation of classes i and j by the centred kernel
alignment of the teacher's features on the two classes' training examples,

    CKA(i, j) = <S_i, S_j>_F / (||S_i||_F ||S_j||_F),

with S_i the covariance of class i's feature vectors. It needs no pairing of examples across
classes. ``"prototype"`` is the cheaper alternative the paper also discusses: cosine similarity
of class-mean features.

Memory stays bounded for large label sets: only the first ``per_class`` feature vectors of each
class (in the fixed epoch order) are kept, ``C x per_class x D`` floats on the device (1000
classes x 128 x 1000 logits = 512 MB), and the CKA Gram matrix is built one class row at a time
(``C x per_class^2`` floats per row) or, when ``D <= per_class``, from the ``C x D^2``
covariances. The result is cached in the teacher's cache directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from losses.base import Need, Preparation

CLASS_COSTS = ("cka", "prototype")
COST_FEATURES = {"logits": Need.LOGITS, "embedding": Need.EMBEDDING}


@torch.no_grad()
def collect_class_samples(prep: Preparation, features: str, num_classes: int, per_class: int) -> tuple[Tensor, Tensor]:
    """The teacher's first ``per_class`` feature vectors of each class, ``[C, per_class, D]``, and their counts."""
    need = COST_FEATURES[features]
    samples, counts = None, torch.zeros(num_classes, dtype=torch.long, device=prep.device)
    for images, labels, _ in prep.batches():
        outputs = prep.extract(prep.teacher, images, frozenset({need}))
        vectors = (outputs.logits if need is Need.LOGITS else outputs.embedding).float()
        if samples is None:
            samples = vectors.new_zeros(num_classes, per_class, vectors.shape[1])
        rank_in_batch = F.one_hot(labels, num_classes).cumsum(0).gather(1, labels[:, None])[:, 0] - 1
        slot = counts[labels] + rank_in_batch
        keep = slot < per_class
        samples[labels[keep], slot[keep]] = vectors[keep]
        counts += torch.bincount(labels, minlength=num_classes)
        if bool((counts >= per_class).all()):
            break
    return samples, counts.clamp_max(per_class)


def _covariance_inner_products(centred: Tensor) -> Tensor:
    """``<S_i, S_j>_F`` for every pair of classes, from centred samples ``[C, b, D]``."""
    classes, per_class, dim = centred.shape
    if dim <= per_class:
        covariances = (centred.mT @ centred).reshape(classes, -1)
        return covariances @ covariances.T
    # <X_i^T X_i, X_j^T X_j>_F = ||X_i X_j^T||_F^2: b x b blocks instead of D x D covariances.
    return torch.stack([(centred[i] @ centred.mT).pow(2).sum((-2, -1)) for i in range(classes)])


def class_similarity(samples: Tensor, counts: Tensor, method: str) -> Tensor:
    """``[C, C]`` similarity in [-1, 1] (``"prototype"``) or [0, 1] (``"cka"``); unfilled slots are ignored."""
    valid = (torch.arange(samples.shape[1], device=samples.device) < counts[:, None]).unsqueeze(-1)
    means = (samples * valid).sum(1) / counts.clamp_min(1)[:, None]
    if method == "prototype":
        prototypes = F.normalize(means, dim=-1)
        return prototypes @ prototypes.T
    gram = _covariance_inner_products((samples - means.unsqueeze(1)) * valid)
    norms = gram.diagonal().sqrt()
    return gram / (norms[:, None] * norms[None, :]).clamp_min(torch.finfo(gram.dtype).tiny)


def cached_class_similarity(prep: Preparation, method: str, features: str, num_classes: int, per_class: int) -> Tensor:
    """:func:`class_similarity` of the teacher, loaded from ``prep.cache_dir`` when computed before."""
    path = Path(prep.cache_dir) / f"class-similarity_{method}_{features}_{num_classes}x{per_class}.pt"
    if path.exists():
        return torch.load(path, map_location=prep.device, weights_only=True)
    samples, counts = collect_class_samples(prep, features, num_classes, per_class)
    similarity = class_similarity(samples, counts, method)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(similarity.cpu(), partial)
    os.replace(partial, path)  # atomic: concurrent runs never read a half-written file
    return similarity
