"""Distillation and ground-truth losses (METHOD.md §3).

    L_kd = (1/|H|) * sum_h T^2 * KL( softmax(t_h/T) || softmax(s_h/T) )     KL summed over
           classes, averaged over the batch ("batchmean")
    L_gt = (1/|H|) * sum_h w_h * CE(s_h, y_h)       CE averaged over the labelled rows (label -1 ignored)
    L    = a_kd * L_kd + a_gt * L_gt

H is the set of active heads: heads with a positive weight.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from egodistill.engine.losses import label_loss


def active_heads(heads: list[str] | dict[str, int], head_weights: dict[str, float] | None = None) -> list[str]:
    """Return the heads (in the given order) whose weight is positive; a missing weight is 1.0.

    A dict of `{head: classes}` also drops heads with no classes.
    """
    weights = head_weights or {}
    names = list(heads)
    if isinstance(heads, dict):
        names = [h for h in names if heads[h] > 0]
    return [h for h in names if weights.get(h, 1.0) > 0]


def kl_batchmean(student: Tensor, teacher: Tensor, temperature: float = 1.0) -> Tensor:
    """Return T^2 * KL(softmax(teacher/T) || softmax(student/T)), summed over classes and
    averaged over the batch, as a scalar. `student`, `teacher`: [B, C] logits."""
    if student.shape != teacher.shape or student.ndim != 2:
        raise ValueError(
            f"kd loss: student logits {tuple(student.shape)} and teacher logits "
            f"{tuple(teacher.shape)} must both be [batch, classes] of the same shape"
        )
    if temperature <= 0:
        raise ValueError(f"kd loss: temperature must be positive, got {temperature}")
    log_p_student = F.log_softmax(student.float() / temperature, dim=-1)  # [B, C]
    log_p_teacher = F.log_softmax(teacher.float() / temperature, dim=-1)  # [B, C]
    # sum_c p_t * (log p_t - log p_s); p_t = 0 terms contribute 0 (exp(-inf) * finite = 0).
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1)  # [B]
    return kl.mean() * temperature**2


def kd_loss(
    student: dict[str, Tensor],
    teacher: dict[str, Tensor],
    temperature: float = 1.0,
    heads: list[str] | None = None,
) -> Tensor:
    """Return L_kd: the temperature-squared scaled batch-mean KL averaged over `heads`
    (default: every head of `student`). Each dict maps head -> [B, C] logits."""
    heads = list(student) if heads is None else heads
    if not heads:
        raise ValueError("kd loss: no active heads")
    for h in heads:
        if h not in teacher or h not in student:
            raise KeyError(
                f"kd loss: head '{h}' missing (student heads: {sorted(student)}, teacher heads: {sorted(teacher)})"
            )
    return sum(kl_batchmean(student[h], teacher[h], temperature) for h in heads) / len(heads)


def gt_loss(
    student: dict[str, Tensor],
    labels: dict[str, Tensor] | None,
    head_weights: dict[str, float] | None = None,
    heads: list[str] | None = None,
) -> Tensor:
    """Return L_gt = (1/|H|) * sum_h w_h * CE(s_h, y_h) over `heads` (default: every head of
    `student` with a positive weight). `labels[h]`: [B] class ids, -1 (or no entry) where a
    sample has no label: those rows are ignored (`engine.losses.label_loss`)."""
    weights = head_weights or {}
    heads = active_heads(list(student), weights) if heads is None else heads
    return label_loss(student, labels, heads, weights)[0]


def distill_loss(
    student: dict[str, Tensor],
    teacher: dict[str, Tensor],
    labels: dict[str, Tensor] | None,
    *,
    temperature: float = 1.0,
    alpha_kd: float = 1.0,
    alpha_gt: float = 0.0,
    head_weights: dict[str, float] | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Return (L, parts): L = a_kd * L_kd + a_gt * L_gt and the detached parts
    {"kd": L_kd, "gt": L_gt (only when a_gt > 0)} for logging.

    The active heads are the student's heads with a positive weight in `head_weights`. Labels
    [B] may be given for B*V rows of logits (views folded sample-major); -1 marks an unlabelled
    sample, whose loss is the KD term alone. With a_gt = 0 the label term is not computed.
    """
    heads = active_heads(list(student), head_weights)
    l_kd = kd_loss(student, teacher, temperature, heads)
    loss = alpha_kd * l_kd
    parts = {"kd": l_kd.detach()}
    if alpha_gt:
        l_gt = gt_loss(student, labels, head_weights, heads)
        parts["gt"] = l_gt.detach()
        loss = loss + alpha_gt * l_gt
    return loss, parts


def feature_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Return the squared error of student features `[N, D]` against a teacher's `[N, D]`,
    relative to the teacher features' mean square (scale-free: 1 for a student at zero), float32."""
    if student.shape != teacher.shape:
        raise ValueError(f"feature matching: student features {tuple(student.shape)} and teacher features "
                         f"{tuple(teacher.shape)} differ")
    s, t = student.float(), teacher.float().detach()
    return ((s - t) ** 2).mean() / (t ** 2).mean().clamp_min(1e-8)
