"""The label loss shared by supervised training and distillation (METHOD.md §3, L_gt).

    L_gt = (1/|H|) * sum_h w_h * CE_h,   CE_h = mean over the rows whose label for h is known

A label of -1 means "no label" (a test or unlabelled sample; `collate` writes -1 for a sample
without a label for a head, and a batch in which no sample has one has no entry for that head):
such rows are left out of the mean, and a head with no known row adds 0 (still connected to the
graph, so every head's parameters take part in the backward pass).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

UNLABELLED = -1


def expand_labels(labels: Tensor, rows: int) -> Tensor:
    """Return labels [B] repeated for B*V rows of logits folded sample-major."""
    if rows % labels.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels do not divide {rows} rows of logits")
    return labels.repeat_interleave(rows // labels.shape[0])


def head_labels(labels: dict[str, Tensor] | None, head: str, rows: int, device: torch.device) -> Tensor:
    """Return the labels of `head` for `rows` rows of logits (views folded sample-major) on
    `device`: -1 everywhere when the batch has no labels for that head."""
    if not labels or head not in labels:
        return torch.full((rows,), UNLABELLED, dtype=torch.long, device=device)
    return expand_labels(labels[head].long(), rows).to(device)


def label_loss(
    logits: dict[str, Tensor],
    labels: dict[str, Tensor] | None,
    heads: list[str],
    head_weights: dict[str, float] | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Return (L_gt, {"ce_<head>": detached CE_h}) over `heads` (each must be in `logits`).

    `logits[h]`: [B*V, C]; `labels[h]`: [B] class ids, -1 where unknown (views folded into the
    rows repeat each sample's label). A missing weight is 1.0.
    """
    if not heads:
        raise ValueError("label loss: no active heads")
    weights = head_weights or {}
    total: Tensor | float = 0.0
    parts: dict[str, Tensor] = {}
    for h in heads:
        if h not in logits:
            raise KeyError(f"label loss: no logits for head '{h}' (logits for: {sorted(logits)})")
        z = logits[h].float()  # [B*V, C]
        y = head_labels(labels, h, z.shape[0], z.device)  # [B*V]
        known = (y >= 0).sum().clamp(min=1)
        ce = F.cross_entropy(z, y, ignore_index=UNLABELLED, reduction="sum") / known
        parts[f"ce_{h}"] = ce.detach()
        total = total + weights.get(h, 1.0) * ce
    return total / len(heads), parts

