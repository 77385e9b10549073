"""Temperature scaling of the ensemble teacher, one temperature per head, fitted on the held-out
split (Guo et al. 2017, "On calibration of modern neural networks").

Why the ensemble needs it: its logits are a weighted sum with weights that sum to 1. A teacher
that knows nothing about a head (a flow teacher asked for the noun) adds logits that barely
depend on the class, so the informative teacher's logits are in effect multiplied by its weight:
the ensemble's distribution for that head is far softer than its accuracy warrants, and a student
matching it learns to be underconfident. Dividing each head's logits by the temperature that
minimises the held-out negative log-likelihood makes the targets as sharp as the ensemble is
right. It never changes a prediction (the argmax is the same), only how sure the targets are.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from egodistill.engine.metrics import expected_calibration_error

# The search range of the temperature; the bounds are far beyond what a sane ensemble needs
# (a ten-teacher ensemble with one informative teacher is about 0.1).
T_MIN, T_MAX = 0.02, 50.0


def _nll(logits: Tensor, labels: Tensor, temperature: float) -> float:
    return float(F.cross_entropy(logits / temperature, labels))


def fit_temperature(logits: Tensor, labels: Tensor, *, iterations: int = 80) -> float:
    """Return the temperature T in [T_MIN, T_MAX] minimising mean CE(logits / T, labels).

    `logits` [M, C], `labels` [M] (rows with a negative label are left out). The held-out NLL is
    convex in 1/T, hence unimodal in log T: a golden-section search on log T finds its minimum
    without gradients or a learning rate. Returns 1.0 when every row's top-1 is right (a small
    held-out split of an accurate head), where the NLL has no minimum.
    """
    known = labels >= 0
    if not bool(known.any()):
        raise ValueError("ensemble calibration: no labelled samples to fit a temperature on")
    z, y = logits[known].double(), labels[known].long()
    if bool((z.argmax(-1) == y).all()):
        # Every sample right: the NLL keeps falling as T -> 0 and has no minimum; a tiny
        # temperature would turn the targets into labels. Nothing to fit: leave the head as it is.
        return 1.0
    lo, hi = math.log(T_MIN), math.log(T_MAX)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = _nll(z, y, math.exp(a)), _nll(z, y, math.exp(b))
    for _ in range(iterations):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = _nll(z, y, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = _nll(z, y, math.exp(b))
    return math.exp((lo + hi) / 2)


def calibration_record(logits: dict[str, Tensor], labels: dict[str, Tensor]) -> dict[str, dict[str, float]]:
    """Return {"temperature": {head: T}, "nll": {head: [before, after]}, "ece": {head: [before,
    after]} (x100)} for the ensemble's held-out logits {head: [M, C]} and labels {head: [M]}."""
    record: dict[str, dict] = {"temperature": {}, "nll": {}, "ece": {}}
    for h, z in logits.items():
        known = labels[h] >= 0
        zk, yk = z[known].double(), labels[h][known].long()
        t = fit_temperature(z, labels[h])
        record["temperature"][h] = t
        record["nll"][h] = [_nll(zk, yk, 1.0), _nll(zk, yk, t)]
        record["ece"][h] = [100.0 * expected_calibration_error(*_confidence(zk / s, yk)) for s in (1.0, t)]
    return record


def _confidence(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Return (top-1 probability [M], top-1 correct [M] bool)."""
    p = logits.softmax(-1)
    conf, pred = p.max(-1)
    return conf, pred == labels
