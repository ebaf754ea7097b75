"""Class-to-class similarity from a frozen teacher, the ground of logit-level OT (WKD-L).

Lv, Yang & Li (NeurIPS 2024) model the interrelation of classes i and j by the linear centred
kernel alignment of the teacher's features on the two classes' training examples. The authors'
code (``linear_CKA_precenter`` of ``tools/generate_cost_matrix.py``) computes, with ``X`` and ``Y``
the column-centred ``[N, D]`` feature matrices of the two classes,

    CKA(i, j) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)            (``"cka"``, the default)

which pairs row k of one class with row k of the other (the k-th example in the fixed data
order, and for feature maps the same spatial position). ``"cka-unpaired"`` is the
order-free reading of the paper, ``<X^T X, Y^T Y>_F / (...)`` (inner product of the two
covariances); ``"prototype"`` is the cheaper alternative the paper also discusses, the cosine
similarity of class-mean features.

The feature source is a setting: ``"features"``, the last stage's map, every spatial position of
every image a row (``N = images x H x W``, ``D`` = channels; the authors' CIFAR-100 cost),
``"logits"`` (the authors' ImageNet cost) or ``"embedding"`` (pooled pre-logits features).
As the authors' ``generate_class_proto.py`` does, the rows come from every training image in the
dataset's order under the test transform (``Preparation.in_order``): no augmentation, no shuffle,
no dropped last batch. The first ``per_class`` images of each class are kept, then every class is
cut to the smallest class's count, as the authors' stacking does. Memory:
``C x N x D`` floats on the device (CIFAR-100 from 8x8x256 maps of all 500 images: 3.3 GB).
The result is cached in the teacher's cache directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from losses.base import Need, Preparation

CLASS_COSTS = ("cka", "cka-unpaired", "prototype")
COST_FEATURES = {"features": Need.FEATURES, "logits": Need.LOGITS, "embedding": Need.EMBEDDING}


def _rows(outputs, need: Need) -> Tensor:
    """One model output as ``[B, rows, D]``: a map's H*W positions (row-major), or one vector."""
    if need is Need.FEATURES:
        return outputs.features[-1].flatten(2).mT
    return (outputs.logits if need is Need.LOGITS else outputs.embedding).unsqueeze(1)


@torch.no_grad()
def collect_class_samples(prep: Preparation, features: str, num_classes: int, per_class: int) -> Tensor:
    """The teacher's rows of the first ``per_class`` images of each class, ``[C, N, D]``.

    Every class keeps as many images as the smallest class has (at most ``per_class``); a class
    without training examples keeps zeros, so it is similar to no class (similarity 0).
    """
    need = COST_FEATURES[features]
    samples, counts = None, torch.zeros(num_classes, dtype=torch.long, device=prep.device)
    for images, labels, _ in prep.in_order():
        rows = _rows(prep.extract(prep.teacher, images, frozenset({need})), need).float()
        if samples is None:
            samples = rows.new_zeros(num_classes, per_class, *rows.shape[1:])
        rank_in_batch = F.one_hot(labels, num_classes).cumsum(0).gather(1, labels[:, None])[:, 0] - 1
        slot = counts[labels] + rank_in_batch
        keep = slot < per_class
        samples[labels[keep], slot[keep]] = rows[keep]
        counts += torch.bincount(labels, minlength=num_classes)
        if bool((counts >= per_class).all()):
            break
    images = int(counts[counts > 0].clamp_max(per_class).min())
    return samples[:, :images].flatten(1, 2)


def _paired_inner_products(centred: Tensor) -> Tensor:
    """``||X_j^T X_i||_F^2`` for every pair of classes, from centred rows ``[C, N, D]``."""
    classes, rows, dim = centred.shape
    if rows <= dim:  # = <X_i X_i^T, X_j X_j^T>_F: N x N Gram matrices instead of D x D products
        grams = (centred @ centred.mT).reshape(classes, -1)
        return grams @ grams.T
    products = centred.new_zeros(classes, classes)
    for i in range(classes):  # the upper triangle, row by row: [C - i, D, D] at a time
        row = (centred[i:].mT @ centred[i]).pow(2).sum((-2, -1))
        products[i, i:], products[i:, i] = row, row
    return products


def _covariance_inner_products(centred: Tensor) -> Tensor:
    """``<X_i^T X_i, X_j^T X_j>_F`` for every pair of classes, from centred rows ``[C, N, D]``."""
    classes, rows, dim = centred.shape
    if dim <= rows:
        covariances = (centred.mT @ centred).reshape(classes, -1)
        return covariances @ covariances.T
    # = ||X_i X_j^T||_F^2: N x N blocks instead of D x D covariances.
    return torch.stack([(centred[i] @ centred.mT).pow(2).sum((-2, -1)) for i in range(classes)])


def class_similarity(samples: Tensor, method: str) -> Tensor:
    """``[C, C]`` similarity of classes from their rows ``[C, N, D]``: in [-1, 1] (``"prototype"``), else [0, 1]."""
    means = samples.mean(1)
    if method == "prototype":
        prototypes = F.normalize(means, dim=-1)
        return prototypes @ prototypes.T
    centred = samples - means.unsqueeze(1)
    gram = (_paired_inner_products if method == "cka" else _covariance_inner_products)(centred)
    norms = gram.diagonal().sqrt()
    return gram / (norms[:, None] * norms[None, :]).clamp_min(torch.finfo(gram.dtype).tiny)


def cached_class_similarity(prep: Preparation, method: str, features: str, num_classes: int, per_class: int) -> Tensor:
    """:func:`class_similarity` of the teacher, loaded from ``prep.cache_dir`` when computed before."""
    path = Path(prep.cache_dir) / f"wkd-class-similarity_{method}_{features}_{num_classes}x{per_class}_in-order.pt"
    if path.exists():
        return torch.load(path, map_location=prep.device, weights_only=True)
    similarity = class_similarity(collect_class_samples(prep, features, num_classes, per_class), method)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(similarity.cpu(), partial)
    os.replace(partial, path)  # atomic: concurrent runs never read a half-written file
    return similarity
