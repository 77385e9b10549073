"""DistillObjective: cached teacher logits and the online ensemble give METHOD.md §3's loss."""
from __future__ import annotations

import torch

from egodistill.distill.ensemble import EnsembleTeacher
from egodistill.distill.loss import distill_loss, kd_loss
from egodistill.engine.objectives import DistillObjective


def test_cached_logits_are_used_without_a_teacher():
    g = torch.Generator().manual_seed(0)
    student = {"verb": torch.randn(3, 4, generator=g), "noun": torch.randn(3, 5, generator=g)}
    teacher = {"verb": torch.randn(3, 4, generator=g), "noun": torch.randn(3, 5, generator=g)}
    batch = {"teacher_logits": {h: t.half() for h, t in teacher.items()}, "labels": {"verb": torch.tensor([0, 1, 2]), "noun": torch.tensor([4, 3, 2])}}
    obj = DistillObjective(None, temperature=2.0, alpha_kd=1.0, alpha_gt=0.5)
    loss, parts = obj(student, batch)
    ref, _ = distill_loss(student, {h: t.half().float() for h, t in teacher.items()}, batch["labels"],
                          temperature=2.0, alpha_kd=1.0, alpha_gt=0.5)
    assert torch.allclose(loss, ref) and set(parts) == {"kd", "gt"}


def test_online_ensemble_and_views_folded_into_rows():
    # 2 samples x 2 views: the teacher returns 4 rows, labels stay [2]
    t = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0], [3.0, 0.0]])
    ens = EnsembleTeacher([lambda b: {"action": t}, lambda b: {"action": 3 * t}], "uniform")
    obj = DistillObjective(ens, alpha_gt=1.0)
    student = {"action": torch.zeros(4, 2, requires_grad=True)}
    batch = {"labels": {"action": torch.tensor([0, 1])}}
    loss, parts = obj(student, batch)
    ce = torch.nn.functional.cross_entropy(student["action"], torch.tensor([0, 0, 1, 1]))
    assert torch.allclose(loss, kd_loss(student, {"action": 2 * t}) + ce)
    loss.backward()
    assert student["action"].grad is not None


def test_independent_views_feed_the_teachers_their_own_inputs():
    seen = {}

    def teacher(batch):
        seen["rgb"] = batch["rgb"]
        return {"action": torch.zeros(1, 2)}

    obj = DistillObjective(EnsembleTeacher([teacher], "uniform"))
    student_rgb, teacher_rgb = torch.zeros(1, 1, 2), torch.ones(1, 1, 2)
    obj({"action": torch.zeros(1, 2)}, {"rgb": student_rgb, "teacher:rgb": teacher_rgb, "labels": {"action": torch.tensor([0])}})
    assert seen["rgb"] is teacher_rgb


def test_cached_batch_with_an_unlabelled_sample():
    g = torch.Generator().manual_seed(1)
    student = {"verb": torch.randn(2, 3, generator=g)}
    teacher = {"verb": torch.randn(2, 3, generator=g)}
    batch = {"teacher_logits": teacher, "labels": {"verb": torch.tensor([0, -1])}}
    loss, parts = DistillObjective(None)(student, batch)  # alpha_gt = 0: no label term, no index error
    assert torch.allclose(loss, kd_loss(student, teacher)) and set(parts) == {"kd"}


def test_both_objectives_live_in_one_module_and_share_the_label_loss():
    """The review found SupervisedObjective in the trainer and DistillObjective in distill/,
    each with its own label loss (one of them failing on label -1)."""
    from egodistill.engine import objectives
    from egodistill.engine.objectives import SupervisedObjective

    assert DistillObjective.__module__ == SupervisedObjective.__module__ == objectives.__name__
    g = torch.Generator().manual_seed(2)
    student = {"verb": torch.randn(4, 3, generator=g), "noun": torch.randn(4, 5, generator=g)}
    batch = {"teacher_logits": {h: torch.randn(z.shape, generator=g) for h, z in student.items()},
             "labels": {"verb": torch.tensor([0, -1, 2, 1]), "noun": torch.tensor([-1, -1, 4, 0])}}
    gt_only, _ = DistillObjective(None, alpha_kd=0.0, alpha_gt=1.0)(student, batch)
    supervised, _ = SupervisedObjective()(student, batch)
    assert torch.isfinite(gt_only) and torch.allclose(gt_only, supervised)


def test_feature_matching_adds_its_weighted_term_and_needs_teacher_features():
    from torch import nn

    from egodistill.distill.ensemble import FEATURES
    from egodistill.distill.loss import feature_loss
    from egodistill.models.heads import FeatureTap, LinearHeads

    class Tiny(nn.Module):  # forward = head(features(x)), as every registered architecture
        def __init__(self):
            super().__init__()
            self.body, self.head = nn.Linear(3, 4), LinearHeads(4, {"verb": 2})

        def forward(self, x):
            return self.head(self.body(x))

    g = torch.Generator().manual_seed(0)
    model, x = Tiny(), torch.randn(3, 3, generator=g)
    teacher = {"verb": torch.randn(3, 2, generator=g)}
    feats = torch.randn(3, 4, generator=g)
    labels = {"verb": torch.tensor([0, 1, 0])}
    obj = DistillObjective(None, alpha_gt=1.0, alpha_feat=0.5, student_features=FeatureTap(model))
    logits = model(x)
    loss, parts = obj(logits, {"teacher_logits": {**teacher, FEATURES: feats}, "labels": labels})
    base, _ = distill_loss(logits, teacher, labels, alpha_gt=1.0)
    want = feature_loss(model.body(x), feats)
    assert torch.allclose(loss, base + 0.5 * want) and torch.allclose(parts["feat"], want)
    model(x)
    try:
        obj(model(x), {"teacher_logits": teacher, "labels": labels})
    except KeyError as e:
        assert "teacher gave no features" in str(e)
    else:
        raise AssertionError("a batch without teacher features was accepted")
