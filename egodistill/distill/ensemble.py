"""The ensemble teacher: frozen unimodal teachers whose logits are combined per head (METHOD.md §4).

A teacher is any callable `batch -> {head: [B*V, C]}`; `ModelTeacher` is the engine's
`ModelPredictor` (a model reading its own modality from a batch), frozen. The ensemble
never builds a graph through the teachers (no_grad) and keeps modules in eval mode.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from egodistill.distill.weighting import SCHEMES, combine, per_sample_weights, uniform_weights
from egodistill.engine.evaluate import ModelPredictor
from egodistill.engine.losses import head_labels
from egodistill.models.heads import FeatureTap

TeacherFn = Callable[[dict], dict[str, Tensor]]
# The key of a teacher's pooled features next to the ensemble's logits (and in a teacher
# cache): it holds a ".", which no head name may (LinearHeads), so it never names a head.
FEATURES = "teacher.features"


class ModelTeacher(ModelPredictor):
    """A trained model as a teacher: a `ModelPredictor` that is frozen (eval mode, no gradients).
    `name` identifies it (its run folder)."""

    def __init__(self, model: nn.Module, model_cfg, name: str = ""):
        super().__init__(model, model_cfg, name)
        freeze(self.model)

    def train(self, mode: bool = True) -> "ModelTeacher":
        # A teacher stays in eval mode (dropout, drop-path off) whatever its owner does.
        return super().train(False)


def freeze(module: nn.Module) -> nn.Module:
    """Put `module` in eval mode with no parameter requiring a gradient; returns it."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class EnsembleTeacher(nn.Module):
    """Weighted sum of frozen teachers' logits, per head.

    `weighting`: "uniform", "per-sample" (needs `batch["labels"]`; `weights`, when given, are
    used for the samples without a label) or "dataset" (needs `weights`: {head: [N]} computed
    beforehand on a held-out split). `heads` restricts the output
    to these heads (default: the first teacher's heads). `names` labels the teachers in logs.
    `temperatures` {head: T}, when given, divide each head's combined logits (the held-out
    calibration of `egodistill.engine.calibration`); heads without one are left as they are.
    """

    def __init__(
        self,
        teachers: Sequence[TeacherFn],
        weighting: str = "uniform",
        tau: float = 1.0,
        weights: dict[str, Tensor] | None = None,
        heads: Sequence[str] | None = None,
        names: Sequence[str] | None = None,
        temperatures: dict[str, float] | None = None,
        feature_teacher: int | None = None,
    ):
        super().__init__()
        if not teachers:
            raise ValueError("ensemble teacher: no teachers given")
        if weighting not in SCHEMES:
            raise ValueError(f"ensemble teacher: unknown weighting {weighting!r}; valid: {', '.join(SCHEMES)}")
        if weighting == "dataset" and weights is None:
            raise ValueError("ensemble teacher: weighting 'dataset' needs the dataset weights (compute them first)")
        self.teachers = list(teachers)
        # Registered so that .to(device) moves the teacher models; callables that are not modules
        # are kept as they are.
        self.modules_ = nn.ModuleList([t for t in teachers if isinstance(t, nn.Module)])
        for m in self.modules_:
            freeze(m)
        self.weighting = weighting
        self.tau = tau
        self.heads = list(heads) if heads is not None else None
        self.names = list(names) if names is not None else [getattr(t, "name", f"teacher{i}") for i, t in enumerate(teachers)]
        if weights is not None:
            for h, w in weights.items():
                if w.shape != (len(self.teachers),):
                    raise ValueError(f"ensemble teacher: head '{h}' has {tuple(w.shape)} weights for {len(self.teachers)} teachers")
        self.fixed_weights = {h: w.detach().float().cpu() for h, w in weights.items()} if weights else None
        for h, t in (temperatures or {}).items():
            if not t > 0:
                raise ValueError(f"ensemble teacher: head '{h}' has temperature {t}; a temperature must be positive")
        self.temperatures = dict(temperatures or {})
        # The pooled features of one teacher (a `ModelTeacher`), returned under FEATURES for
        # feature matching (distill.features): tapped as the ensemble runs it, not run twice.
        self.feature_tap = FeatureTap(self.teachers[feature_teacher].model) if feature_teacher is not None else None

    def train(self, mode: bool = True) -> "EnsembleTeacher":
        return super().train(False)  # frozen: always eval mode

    @torch.no_grad()
    def teacher_logits(self, batch: dict) -> list[dict[str, Tensor]]:
        """Return each teacher's logits {head: [B*V, C]} (float32), in teacher order."""
        outs = []
        for i, teacher in enumerate(self.teachers):
            logits = teacher(batch)
            heads = self.heads if self.heads is not None else list(outs[0] if outs else logits)
            for h in heads:
                if h not in logits:
                    raise KeyError(f"teacher {self.names[i]} has no head '{h}' (its heads: {sorted(logits)})")
            outs.append({h: logits[h].float() for h in heads})
        return outs

    def weights(self, logits: list[dict[str, Tensor]], batch: dict) -> dict[str, Tensor]:
        """Return the weights used for `logits`: {head: [N]} or, per-sample, {head: [N, B*V]}."""
        heads = list(logits[0])
        if self.weighting == "uniform":
            return uniform_weights(len(logits), heads)
        if self.weighting == "dataset":
            missing = [h for h in heads if h not in self.fixed_weights]
            if missing:
                raise KeyError(f"ensemble teacher: no dataset weights for heads {missing}")
            return {h: self.fixed_weights[h] for h in heads}
        if "labels" not in batch:
            raise KeyError("ensemble teacher: weighting 'per-sample' needs batch['labels']")
        rows = logits[0][heads[0]].shape[0]
        # -1 (or no entry) for an unlabelled sample: it gets the dataset weights when given, else 1/N
        labels = {h: head_labels(batch["labels"], h, rows, logits[0][h].device) for h in heads}
        return per_sample_weights(logits, labels, self.tau, fallback=self.fixed_weights)

    def combine_teachers(self, logits: list[dict[str, Tensor]], batch: dict) -> dict[str, Tensor]:
        """Return the ensemble's logits {head: [B*V, C]} from its teachers' `logits` (in teacher
        order; `batch` gives the labels that per-sample weights need)."""
        out = combine(logits, self.weights(logits, batch))
        return {h: z / self.temperatures[h] if h in self.temperatures else z for h, z in out.items()}

    @torch.no_grad()
    def forward(self, batch: dict) -> dict[str, Tensor]:
        """Return the ensemble's logits {head: [B*V, C]} for `batch`, and with a feature teacher
        its pooled features under FEATURES `[B*V, D]` (float32)."""
        out = self.combine_teachers(self.teacher_logits(batch), batch)
        if self.feature_tap is not None:
            out[FEATURES] = self.feature_tap.take().float()
        return out
