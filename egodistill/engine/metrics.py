"""Evaluation metrics (METHOD.md §9) on view-averaged logits.

Every accuracy is in percent and comes with its binomial 95% half-interval
`100 * 1.96 * sqrt(p (1 - p) / n)` under the key `<name>_ci95`; ECE is x100 as the authors
report it. Keys (head = verb, noun or action):

    <head>_top1, <head>_top5, <head>_ece               every labelled sample of the head
    <head>_tail_top1, <head>_tail_n                    samples whose class is a tail class
    <head>_unseen_top1, <head>_unseen_n                samples of participants unseen in training
    action_top1, action_top5, action_ece, ...          EPIC: from the verb and noun heads
    num_samples                                        samples with at least one label

Ranking rule for ties: a class with the same score as the true class ranks before it when its
id is lower (a stable sort of the scores, descending). EPIC actions are ranked the way the
challenge does: action id = verb * 1000 + noun, scored by p(verb) * p(noun) over the top-100
verbs x top-100 nouns (softmax scores); an action outside those 10,000 candidates is never right.
Tied actions rank by action id. Samples with label -1 (unlabelled) are left out of a head's metrics.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from egodistill.data.records import DatasetInfo, Sample

ECE_BINS = 15
ACTION_CANDIDATES = 100  # top verbs and top nouns whose products form the EPIC action scores
UNRANKED = 2**62  # the rank of a true class among scores with a NaN: never within any top-k


def binomial_ci95(p: float, n: int) -> float:
    """Return the half-width of the normal-approximation 95% interval of a proportion `p`
    (a fraction in [0, 1]) measured on `n` samples: 1.96 * sqrt(p (1 - p) / n); 0 for n = 0."""
    if n <= 0:
        return 0.0
    return 1.96 * math.sqrt(max(p * (1.0 - p), 0.0) / n)


def true_class_rank(scores: Tensor, labels: Tensor) -> Tensor:
    """Return the 0-based rank [N] of each sample's true class among `scores` [N, C].

    rank = #classes with a higher score + #classes with the same score and a lower id, so
    top-k is right exactly when rank < k (ties broken by class id, lower first). A row with a
    NaN score has no order: its rank is UNRANKED, larger than any k, so it is never right (NaN
    compares false with everything, which would otherwise make it rank 0).
    """
    if scores.ndim != 2 or labels.shape != scores.shape[:1]:
        raise ValueError(f"scores must be [N, C] and labels [N], got {tuple(scores.shape)} and {tuple(labels.shape)}")
    true = scores.gather(1, labels.long().unsqueeze(1))  # [N, 1]
    ids = torch.arange(scores.shape[1], device=scores.device).unsqueeze(0)  # [1, C]
    higher = (scores > true).sum(1)
    tied_before = ((scores == true) & (ids < labels.unsqueeze(1))).sum(1)
    rank = higher + tied_before
    return torch.where(torch.isnan(scores).any(1), torch.full_like(rank, UNRANKED), rank)


def topk_correct(scores: Tensor, labels: Tensor, k: int) -> Tensor:
    """Return a bool [N]: the true class is among the top `k` of `scores` [N, C] (ties by id)."""
    return true_class_rank(scores, labels) < k


def stable_topk(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Return (values, ids), each [N, k]: the `k` highest scores per row, ties by lower id."""
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]  # [N, k]
    return scores.gather(1, order), order


def epic_action_scores(verb_probs: Tensor, noun_probs: Tensor, top: int = ACTION_CANDIDATES) -> tuple[Tensor, Tensor]:
    """Return (scores, action ids), each [N, kv*kn]: p(verb) * p(noun) over the top-`top` verbs and
    nouns of each sample, sorted best first (ties by action id); action id = verb * 1000 + noun."""
    kv, kn = min(top, verb_probs.shape[1]), min(top, noun_probs.shape[1])
    pv, v = stable_topk(verb_probs, kv)  # [N, kv]
    pn, n = stable_topk(noun_probs, kn)  # [N, kn]
    scores = (pv.unsqueeze(2) * pn.unsqueeze(1)).flatten(1)  # [N, kv*kn]
    ids = (v.unsqueeze(2) * 1000 + n.unsqueeze(1)).flatten(1)  # [N, kv*kn]
    # Sort by action id first, then stably by score: equal scores stay in id order.
    by_id = ids.argsort(dim=1)
    scores, ids = scores.gather(1, by_id), ids.gather(1, by_id)
    by_score = torch.sort(scores, dim=1, descending=True, stable=True).indices
    return scores.gather(1, by_score), ids.gather(1, by_score)


def epic_action_rank(verb_probs: Tensor, noun_probs: Tensor, verbs: Tensor, nouns: Tensor,
                     top: int = ACTION_CANDIDATES, cap: int | None = None, chunk: int = 1024) -> tuple[Tensor, Tensor]:
    """Return (rank [N], confidence [N]): the 0-based rank of the true action (verbs[i], nouns[i])
    among the EPIC action candidates (larger than the number of candidates when it is not one),
    and the best candidate's score (the action confidence used by ECE).

    Same order as `epic_action_scores`, computed by counting (no sort): rank = #candidates
    scoring higher + #candidates scoring the same with a lower id. With `cap`, ranks are exact
    below `cap` and only known to be >= cap above it, which needs just the top-`cap` verbs x
    top-`cap` nouns: the actions ranked before a pair form a down-set of the (verb rank, noun
    rank) grid (a pair whose verb and noun both rank no lower scores at least as high and has an
    id no larger), and a down-set with `cap` or more members has `cap` of them in that corner.
    """
    corner = min(top, cap) if cap else top
    kv, kn = min(corner, verb_probs.shape[1]), min(corner, noun_probs.shape[1])
    verbs, nouns = verbs.long(), nouns.long()
    in_top = (true_class_rank(verb_probs, verbs) < min(top, verb_probs.shape[1])) & \
             (true_class_rank(noun_probs, nouns) < min(top, noun_probs.shape[1]))
    ranks, confs = [], []
    for i in range(0, verb_probs.shape[0], chunk):
        pv, v = stable_topk(verb_probs[i:i + chunk], kv)  # [n, kv]
        pn, n = stable_topk(noun_probs[i:i + chunk], kn)  # [n, kn]
        scores = (pv.unsqueeze(2) * pn.unsqueeze(1)).flatten(1)  # [n, kv*kn]
        ids = (v.unsqueeze(2) * 1000 + n.unsqueeze(1)).flatten(1)  # [n, kv*kn]
        yv, yn = verbs[i:i + chunk], nouns[i:i + chunk]
        # The same product as the candidate's own score, so ties compare exactly.
        true_score = verb_probs[i:i + chunk].gather(1, yv[:, None]) * noun_probs[i:i + chunk].gather(1, yn[:, None])
        true_id = (yv * 1000 + yn)[:, None]
        ranks.append((scores > true_score).sum(1) + ((scores == true_score) & (ids < true_id)).sum(1))
        confs.append(scores[:, 0])  # top verb x top noun: the best candidate
    rank = torch.cat(ranks)
    outside = torch.full_like(rank, max(min(top, verb_probs.shape[1]) * min(top, noun_probs.shape[1]) + 1, cap or 0))
    return torch.where(in_top, rank, outside), torch.cat(confs)


def reliability(confidence: Tensor, correct: Tensor, bins: int = ECE_BINS) -> dict[str, Tensor]:
    """Return per-bin {"count", "accuracy", "confidence"} (each [bins], float64; accuracy and
    confidence are 0 in empty bins) for equal-width bins where bin b holds (b/bins, (b+1)/bins]."""
    confidence = confidence.double().flatten().contiguous()
    correct = correct.double().flatten()
    edges = torch.linspace(0.0, 1.0, bins + 1, dtype=torch.float64)
    # searchsorted(left) gives the first edge >= c, so c in (edges[b], edges[b+1]] -> b + 1.
    index = (torch.searchsorted(edges, confidence, side="left") - 1).clamp(0, bins - 1)
    count = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, torch.ones_like(confidence))
    acc_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, correct)
    conf_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, confidence)
    safe = count.clamp(min=1)
    return {"count": count, "accuracy": acc_sum / safe, "confidence": conf_sum / safe, "edges": edges}


def expected_calibration_error(confidence: Tensor, correct: Tensor, bins: int = ECE_BINS) -> float:
    """Return ECE as a fraction: sum over bins of (n_b / N) * |accuracy_b - mean confidence_b|."""
    n = confidence.numel()
    if n == 0:
        return 0.0
    r = reliability(confidence, correct, bins)
    return float(((r["count"] / n) * (r["accuracy"] - r["confidence"]).abs()).sum())


def _accuracy(name: str, correct: Tensor, out: dict[str, float]) -> None:
    """Store `name` (percent) and `name_ci95` for a bool tensor of per-sample correctness."""
    n = int(correct.numel())
    p = float(correct.double().mean()) if n else 0.0
    out[name] = 100.0 * p
    out[f"{name}_ci95"] = 100.0 * binomial_ci95(p, n)


def _subset(prefix: str, correct: Tensor, mask: Tensor, out: dict[str, float]) -> None:
    """Store top-1 accuracy of `correct` on the samples in `mask` (nothing when none are)."""
    n = int(mask.sum())
    out[f"{prefix}_n"] = float(n)
    if n:
        _accuracy(f"{prefix}_top1", correct[mask], out)


def check_heads(logits: dict[str, Tensor], info: DatasetInfo, what: str = "model") -> None:
    """Raise ValueError when the logits' heads or class counts do not match the dataset's."""
    for head, names in info.heads.items():
        if head not in logits:
            raise ValueError(
                f"the {what} has no '{head}' head but dataset {info.name} needs heads "
                f"{', '.join(f'{h} ({len(c)} classes)' for h, c in info.heads.items())}; "
                f"the {what}'s heads are {', '.join(f'{h} ({z.shape[-1]} classes)' for h, z in logits.items())}")
        classes = logits[head].shape[-1]
        if classes != len(names):
            raise ValueError(
                f"head '{head}': the {what} outputs {classes} classes but dataset {info.name} has {len(names)} "
                f"{head} classes; was the model trained on another dataset or class list?")


def compute_metrics(logits: dict[str, Tensor], samples: list[Sample], info: DatasetInfo) -> dict[str, float]:
    """Return the metrics (see the module docstring) of view-averaged `logits` {head: [N, C]}
    against the labels of `samples` (same order, N of them)."""
    check_heads(logits, info)
    n = len(samples)
    for head, z in logits.items():
        if z.shape[0] != n:
            raise ValueError(f"head '{head}': {z.shape[0]} rows of logits for {n} samples")
    out: dict[str, float] = {"num_samples": float(sum(1 for s in samples if s.labels))}
    unseen = torch.tensor([s.participant in info.unseen_participants for s in samples], dtype=torch.bool)
    labels = {h: torch.tensor([s.labels.get(h, -1) for s in samples], dtype=torch.long) for h in info.heads}
    probs: dict[str, Tensor] = {}
    top1: dict[str, Tensor] = {}
    for head in info.heads:
        scores = logits[head].detach().double().cpu()  # [N, C]
        probs[head] = scores.softmax(1)
        y = labels[head]
        known = y >= 0
        if not known.any():
            continue
        rank = true_class_rank(scores[known], y[known])
        top1[head] = rank < 1
        _accuracy(f"{head}_top1", rank < 1, out)
        _accuracy(f"{head}_top5", rank < 5, out)
        # The confidence of the predicted (argmax, first on ties) class; 0 for NaN logits.
        conf = probs[head][known].max(1).values.nan_to_num(nan=0.0)
        out[f"{head}_ece"] = 100.0 * expected_calibration_error(conf, rank < 1)
        tail = info.tail_classes.get(head)
        if tail is not None:
            is_tail = torch.tensor([int(c) in tail for c in y[known].tolist()], dtype=torch.bool)
            _subset(f"{head}_tail", rank < 1, is_tail, out)
        if info.unseen_participants:
            _subset(f"{head}_unseen", rank < 1, unseen[known], out)
    if info.action_heads is not None:
        vh, nh = info.action_heads
        yv, yn = labels[vh], labels[nh]
        known = (yv >= 0) & (yn >= 0)
        if known.any():
            rank, conf = epic_action_rank(probs[vh][known], probs[nh][known], yv[known], yn[known], cap=5)
            _accuracy("action_top1", rank < 1, out)
            _accuracy("action_top5", rank < 5, out)
            out["action_ece"] = 100.0 * expected_calibration_error(conf.nan_to_num(nan=0.0), rank < 1)
            tv, tn = info.tail_classes.get(vh), info.tail_classes.get(nh)
            if tv is not None or tn is not None:
                # EPIC: an action is a tail action when its verb OR its noun is a tail class.
                is_tail = torch.tensor([(tv is not None and int(a) in tv) or (tn is not None and int(b) in tn)
                                        for a, b in zip(yv[known].tolist(), yn[known].tolist())], dtype=torch.bool)
                _subset("action_tail", rank < 1, is_tail, out)
            if info.unseen_participants:
                _subset("action_unseen", rank < 1, unseen[known], out)
    return out


def selection_metric(metrics: dict[str, float], name: str = "") -> float:
    """Return the number model selection maximises: `metrics[name]` when a name is given, else
    action top-1 when present (EPIC and SSv2), else the mean top-1 of the heads."""
    if name:
        if name not in metrics:
            raise KeyError(f"train.select_metric '{name}' is not among the evaluation metrics: {sorted(metrics)}")
        return float(metrics[name])
    if "action_top1" in metrics:
        return float(metrics["action_top1"])
    tops = [v for k, v in metrics.items() if k.endswith("_top1") and k.count("_") == 1]
    if not tops:
        raise ValueError("no top-1 accuracy to select a model on (no labelled held-out samples?)")
    return sum(tops) / len(tops)


def selection_key(metrics: dict[str, float], name: str = "") -> tuple[float, float]:
    """Return what model selection compares, in order: `selection_metric`, then the mean top-1 of
    the heads. The second breaks ties of the first, which a small held-out split makes common
    (50 clips: action top-1 moves in steps of 2 points) and which would otherwise keep the
    earliest weights that reached the score."""
    tops = [v for k, v in metrics.items() if k.endswith("_top1") and k.count("_") == 1]
    return selection_metric(metrics, name), (sum(tops) / len(tops) if tops else 0.0)


def confusion_matrix(logits: Tensor, labels: Tensor, classes: int) -> Tensor:
    """Return the [classes, classes] int64 matrix counting (true, predicted) over labelled rows."""
    known = labels >= 0
    pred = logits[known].argmax(1)
    flat = labels[known].long() * classes + pred
    return torch.bincount(flat, minlength=classes * classes).view(classes, classes)
