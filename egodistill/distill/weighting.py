"""Ensemble weights over teachers (METHOD.md §4).

For head h and N teachers with logits z_{i,h}, the ensemble logits are the weighted sum
`t_h = sum_i w_{i,h} * z_{i,h}` with weights summing to 1 over teachers:

* uniform:    w_i = 1/N
* per-sample: w_i(x) = softmin_i( CE(z_i(x), y) / tau ); a sample without a label falls back to
              the dataset weights (when computed: distillation with unlabelled samples) or 1/N
* dataset:    w_i = softmin_i( mean_x CE(z_i(x), y) / tau ), mean over a held-out split

`softmin(v) = softmax(-v)`. Weights are computed per head.

Shapes: a teacher's logits for one head are [B, C]; per-sample weights are [N, B]; uniform and
dataset weights are [N].
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

SCHEMES = ("uniform", "per-sample", "dataset")


def softmin(values: Tensor, tau: float = 1.0, dim: int = 0) -> Tensor:
    """Return softmax(-values / tau) along `dim` (same shape as `values`)."""
    if tau <= 0:
        raise ValueError(f"ensemble weighting: tau must be positive, got {tau}")
    return torch.softmax(-values / tau, dim=dim)


def _check(teacher_logits: Sequence[dict[str, Tensor]], heads: Sequence[str]) -> None:
    if not teacher_logits:
        raise ValueError("ensemble weighting: no teachers")
    for i, logits in enumerate(teacher_logits):
        for h in heads:
            if h not in logits:
                raise KeyError(f"ensemble weighting: teacher {i} has no head '{h}' (its heads: {sorted(logits)})")


def per_teacher_ce(teacher_logits: Sequence[dict[str, Tensor]], labels: dict[str, Tensor], head: str) -> Tensor:
    """Return the cross-entropy of each teacher on each sample for `head`: [N, B]."""
    y = labels[head].long()  # [B]
    return torch.stack([F.cross_entropy(z[head].float(), y, reduction="none") for z in teacher_logits])


def uniform_weights(num_teachers: int, heads: Sequence[str]) -> dict[str, Tensor]:
    """Return {head: [N]} weights of 1/N each."""
    if num_teachers < 1:
        raise ValueError("ensemble weighting: no teachers")
    return {h: torch.full((num_teachers,), 1.0 / num_teachers) for h in heads}


def per_sample_weights(
    teacher_logits: Sequence[dict[str, Tensor]], labels: dict[str, Tensor], tau: float = 1.0,
    fallback: dict[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Return {head: [N, B]} per-sample weights softmin_i(CE(z_i(x), y) / tau).

    A sample whose label is negative (unknown) gets `fallback[head]` ([N], the dataset weights)
    when given, else uniform weights.
    """
    heads = list(labels)
    _check(teacher_logits, heads)
    out = {}
    for h in heads:
        y = labels[h].long()  # [B]
        known = y >= 0
        ce = per_teacher_ce(teacher_logits, {h: y.clamp(min=0)}, h)  # [N, B]
        ce = torch.where(known.unsqueeze(0), ce, torch.zeros_like(ce))  # zeros -> uniform softmin
        w = softmin(ce, tau, dim=0)
        if fallback is not None and h in fallback and not bool(known.all()):
            f = fallback[h].to(w.device, w.dtype)
            if f.shape != (w.shape[0],):
                raise ValueError(f"per-sample weights, head '{h}': {tuple(f.shape)} fallback weights for {w.shape[0]} teachers")
            w = torch.where(known.unsqueeze(0), w, f.unsqueeze(1).expand_as(w))
        out[h] = w
    return out


def dataset_weights(
    teacher_logits: Sequence[dict[str, Tensor]], labels: dict[str, Tensor], tau: float = 1.0
) -> dict[str, Tensor]:
    """Return {head: [N]} weights softmin_i(mean_x CE(z_i(x), y) / tau) over all given samples
    (the held-out calibration split). Samples with a negative label are left out of the mean."""
    heads = list(labels)
    _check(teacher_logits, heads)
    out = {}
    for h in heads:
        y = labels[h].long()
        known = y >= 0
        if not bool(known.any()):
            raise ValueError(f"dataset weights: no labelled samples for head '{h}'")
        ce = per_teacher_ce([{h: z[h][known]} for z in teacher_logits], {h: y[known]}, h)  # [N, M]
        out[h] = softmin(ce.mean(dim=1), tau, dim=0)
    return out


def combine(teacher_logits: Sequence[dict[str, Tensor]], weights: dict[str, Tensor]) -> dict[str, Tensor]:
    """Return the ensemble logits {head: [B, C]} = sum_i w_{i,h} * z_{i,h}.

    `weights[h]` is [N] (one weight per teacher) or [N, B] (per sample).
    """
    _check(teacher_logits, list(weights))
    out = {}
    for h, w in weights.items():
        z = torch.stack([t[h].float() for t in teacher_logits])  # [N, B, C]
        if w.shape[0] != z.shape[0]:
            raise ValueError(f"ensemble head '{h}': {w.shape[0]} weights for {z.shape[0]} teachers")
        w = w.to(z.device, z.dtype)
        if w.ndim == 1:
            w = w[:, None, None]  # [N, 1, 1]
        elif w.ndim == 2:
            if w.shape[1] != z.shape[1]:
                raise ValueError(f"ensemble head '{h}': weights for {w.shape[1]} samples, logits for {z.shape[1]}")
            w = w[:, :, None]  # [N, B, 1]
        else:
            raise ValueError(f"ensemble head '{h}': weights must be [N] or [N, B], got {tuple(w.shape)}")
        out[h] = (w * z).sum(0)
    return out
