"""The training objectives: what `fit` minimises, given the model's logits and the batch.

`SupervisedObjective` (`train`): the label loss. `DistillObjective` (`distill`): METHOD.md §3
against the ensemble teacher, whose logits come from the batch when the teacher-logit cache
replays them (`batch["teacher_logits"]`), otherwise from running the frozen ensemble on the batch
(on the teachers' own view under `"teacher:<m>"` keys when views are independent), plus, with
distill.features, a feature-matching term against one teacher's pooled features (cached or
run with the ensemble, under `FEATURES`). Both use one label loss, `engine.losses.label_loss`,
which ignores labels of -1.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from egodistill.distill.data import teacher_batch
from egodistill.distill.ensemble import FEATURES
from egodistill.distill.loss import distill_loss, feature_loss
from egodistill.engine.losses import label_loss


class Objective(nn.Module):
    """Turns a model's logits and the batch into the training loss.

    forward(logits {head: [B*V, C]}, batch) -> (loss scalar, {name: detached scalar to log}).
    An objective may hold frozen modules (teachers); `fit` moves it to the training device.
    """

    def forward(self, logits: dict[str, Tensor], batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError


class SupervisedObjective(Objective):
    """L_gt = (1/|H|) sum_h w_h CE(s_h, y_h) (METHOD.md §3) over the active heads (weight > 0,
    default 1), by `engine.losses.label_loss`: labels of -1 (unlabelled) are ignored; a head
    whose rows are all unlabelled adds 0."""

    def __init__(self, head_weights: dict[str, float] | None = None):
        super().__init__()
        self.head_weights = dict(head_weights or {})

    def forward(self, logits: dict[str, Tensor], batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        heads = [h for h in logits if self.head_weights.get(h, 1.0) > 0]
        if not heads:
            raise ValueError(f"no active heads: every head of {sorted(logits)} has weight 0 in train.head_weights")
        return label_loss(logits, batch.get("labels"), heads, self.head_weights)


class DistillObjective(Objective):
    """L = a_kd * L_kd(student, ensemble teacher) + a_gt * L_gt(student, labels)
    [+ a_feat * L_feat(student features, teacher features)].

    `ensemble` may be None when every batch carries cached teacher logits. `student_features`:
    the `FeatureTap` of the student model, for the feature-matching term (`alpha_feat` > 0),
    whose teacher features come with the teacher's logits (`FEATURES`).
    """

    def __init__(
        self,
        ensemble: nn.Module | None,
        *,
        temperature: float = 1.0,
        alpha_kd: float = 1.0,
        alpha_gt: float = 0.0,
        head_weights: dict[str, float] | None = None,
        alpha_feat: float = 0.0,
        student_features=None,
    ):
        super().__init__()
        if alpha_feat > 0 and student_features is None:
            raise ValueError("distill objective: feature matching (alpha_feat > 0) needs the student's FeatureTap")
        self.ensemble = ensemble
        self.alpha_feat = alpha_feat
        self.student_features = student_features
        self.temperature = temperature
        self.alpha_kd = alpha_kd
        self.alpha_gt = alpha_gt
        self.head_weights = dict(head_weights or {})

    def teacher_logits(self, batch: dict) -> dict[str, Tensor]:
        """Return the ensemble teacher's logits {head: [B*V, C]} for `batch` (float32, no grad)."""
        if "teacher_logits" in batch:
            return {h: t.float() for h, t in batch["teacher_logits"].items()}
        if self.ensemble is None:
            raise KeyError("distill objective: the batch has no cached 'teacher_logits' and no ensemble teacher was given")
        with torch.no_grad():
            return self.ensemble(teacher_batch(batch))

    def forward(self, logits: dict[str, Tensor], batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        """Return (loss, {"kd": ..., "gt": ..., "feat": ...}) for student `logits` {head: [B*V, C]}."""
        teacher = self.teacher_logits(batch)
        teacher_features = teacher.pop(FEATURES, None)
        student = {h: z for h, z in logits.items() if h in teacher}
        # labels [B] against [B*V] rows: the label loss repeats each sample's label per view.
        labels = batch.get("labels")
        loss, parts = distill_loss(
            student, teacher, labels,
            temperature=self.temperature, alpha_kd=self.alpha_kd, alpha_gt=self.alpha_gt,
            head_weights=self.head_weights,
        )
        if self.alpha_feat > 0:
            if teacher_features is None:
                raise KeyError("distill objective: feature matching is on, but the teacher gave no features "
                               "(a teacher cache made without distill.features?)")
            l_feat = feature_loss(self.student_features.take(), teacher_features)
            loss = loss + self.alpha_feat * l_feat
            parts["feat"] = l_feat.detach()
        return loss, parts
