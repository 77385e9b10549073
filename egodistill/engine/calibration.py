"""Temperature scaling, one temperature per head, fitted on a held-out split (Guo et al. 2017, "On
calibration of modern neural networks"). It never changes a head's top-1 (the argmax is the same),
only how sure the probabilities are; EPIC's action ranking, p(verb) x p(noun), keeps its first
action but may reorder the rest when the heads' temperatures differ.

Two users:

* the ensemble teacher (`distill.calibrate`): its logits are a weighted sum with weights that sum
  to 1. A teacher that knows nothing about a head (a flow teacher asked for the noun) adds logits
  that barely depend on the class, so the informative teacher's logits are in effect multiplied
  by its weight: the ensemble's distribution for that head is far softer than its accuracy
  warrants, and a student matching it learns to be underconfident;
* a trained model (`egodistill calibrate RUN`): its temperatures are written to the run's
  `calibration.json` with the digest of the weights they were fitted for, and folded into the
  model's linear heads (logits / T = (W / T) x + b / T) when the run is loaded to evaluate,
  predict or export. A distilled student is underconfident where its teachers hedged
  (docs/distillation.md); a model trained on labels can be either.
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from egodistill.engine.metrics import expected_calibration_error

# The search range of the temperature; the bounds are far beyond what a sane ensemble needs
# (a ten-teacher ensemble with one informative teacher is about 0.1).
T_MIN, T_MAX = 0.02, 50.0
# A run's temperatures (`egodistill calibrate`), beside its weights.
MODEL_CALIBRATION_FILE = "calibration.json"
FORMAT = "egodistill-calibration"


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
        raise ValueError("calibration: no labelled samples to fit a temperature on")
    z, y = logits[known].double(), labels[known].long()
    bad = int((~torch.isfinite(z)).any(-1).sum())
    if bad:
        # the NLL of a NaN row is NaN for every T: the search would end at a bound, not a fit
        raise ValueError(f"calibration: {bad} of {len(z)} samples have NaN or infinite logits "
                         f"(weights from a diverged training?); no temperature can be fitted")
    if bool((z.argmax(-1) == y).all()):
        # Every sample right: the NLL keeps falling as T -> 0 and has no minimum; a tiny
        # temperature would make every prediction certain. Nothing to fit: leave the head as it is.
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
    after]} (x100)} for held-out logits {head: [M, C]} and labels {head: [M]}."""
    record: dict[str, dict] = {"temperature": {}, "nll": {}, "ece": {}}
    for h, z in logits.items():
        known = labels[h] >= 0
        zk, yk = z[known].double(), labels[h][known].long()
        try:
            t = fit_temperature(z, labels[h])
        except ValueError as e:
            raise ValueError(f"head '{h}': {e}") from None
        record["temperature"][h] = t
        record["nll"][h] = [_nll(zk, yk, 1.0), _nll(zk, yk, t)]
        record["ece"][h] = [100.0 * expected_calibration_error(*_confidence(zk / s, yk)) for s in (1.0, t)]
    return record


def calibration_lines(record: dict[str, Any], what: str = "calibration") -> list[str]:
    """Return one line per head of a `calibration_record`: temperature, held-out NLL and ECE before
    and after, each starting with `what [head]:`."""
    lines = []
    for h, t in record["temperature"].items():
        nll, ece = record["nll"][h], record["ece"][h]
        lines.append(f"{what} [{h}]: temperature {t:.3f}; held-out NLL {nll[0]:.3f} -> {nll[1]:.3f}, "
                     f"ECE {ece[0]:.1f} -> {ece[1]:.1f}")
    return lines


def _confidence(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Return (top-1 probability [M], top-1 correct [M] bool)."""
    p = logits.softmax(-1)
    conf, pred = p.max(-1)
    return conf, pred == labels


def scale_heads(model: nn.Module, temperatures: dict[str, float]) -> nn.Module:
    """Divide the logits of each head in `temperatures` by its temperature, by scaling the weight and
    bias of the model's linear head (`model.head[h]`, `models.heads.LinearHeads`) in place: exact,
    and free at inference and in an export. Returns `model`."""
    head = getattr(model, "head", None)
    missing = [h for h in temperatures if head is None or h not in head]
    if missing:
        raise ValueError(f"calibration: the model has no linear head {', '.join(missing)} to scale "
                         f"(heads: {', '.join(head.keys()) if head is not None else 'none'})")
    for h, t in temperatures.items():  # all checked before any head is changed
        if not (math.isfinite(t) and t > 0):
            raise ValueError(f"calibration: the temperature of head '{h}' must be a positive number, got {t!r}")
    with torch.no_grad():
        for h, t in temperatures.items():
            head[h].weight.div_(t)
            if head[h].bias is not None:
                head[h].bias.div_(t)
    return model


def weights_digest(weights: str | os.PathLike) -> dict[str, Any]:
    """Return what identifies a weights file's content (`file_digest` without the path, so that a
    moved run folder keeps its calibration)."""
    from egodistill.engine.checkpoint import file_digest

    return {k: v for k, v in file_digest(weights).items() if k != "path"}


def model_calibration_record(logits: dict[str, Tensor], labels: dict[str, Tensor], digest: dict[str, Any],
                             clips: int) -> dict[str, Any]:
    """Return the `calibration.json` record of a run's held-out `logits` and `labels` (see
    `calibration_record`), for the weights whose `weights_digest` is `digest`, and `clips` held-out
    clips."""
    return {"format": FORMAT, "weights": digest, "clips": int(clips), **calibration_record(logits, labels)}


def read_model_temperatures(run_dir: str | os.PathLike, weights: str | os.PathLike) -> dict[str, float]:
    """Return {head: T} of the run's `calibration.json` when it was fitted for the weights file
    `weights`; {} when the run has none. A record fitted for other weights (training went on, or
    `last` weights that differ from the best) is ignored with a warning."""
    from egodistill.engine.checkpoint import CheckpointError, read_json

    path = Path(run_dir) / MODEL_CALIBRATION_FILE
    if not path.is_file():
        return {}
    data = read_json(path)
    temps = data.get("temperature") if isinstance(data, dict) else None
    if not (isinstance(temps, dict) and all(isinstance(t, (int, float)) and math.isfinite(t) and t > 0
                                            for t in temps.values())):
        raise CheckpointError(f"{path}: not a calibration record (expected 'temperature': {{head: T > 0}}); "
                              f"delete it or run `egodistill calibrate {run_dir}` again")
    if data.get("weights") != weights_digest(weights):
        warnings.warn(f"{path} was fitted for other weights than {weights}: not applied (`egodistill calibrate` "
                      f"fits the run's best weights, model.safetensors; after training went on, run it again)",
                      stacklevel=2)
        return {}
    return {h: float(t) for h, t in temps.items()}


def apply_run_calibration(model: nn.Module, run_dir: str | os.PathLike,
                          weights: str | os.PathLike | None = None) -> dict[str, float]:
    """Fold the run's `calibration.json` temperatures into `model` (loaded from `weights`, default
    the run's best weights) when they were fitted for those weights; return them ({} if none)."""
    from egodistill.engine.checkpoint import WEIGHTS_FILE

    temps = read_model_temperatures(run_dir, weights or Path(run_dir) / WEIGHTS_FILE)
    scale_heads(model, temps)
    return temps
