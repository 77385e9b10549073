"""EnsembleTeacher over plain callables and frozen modules."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from egodistill.distill.ensemble import EnsembleTeacher, freeze

L3 = math.log(3.0)


def const_teacher(rows):
    """A teacher that returns fixed logits for the 'action' head, whatever the batch."""
    t = torch.tensor(rows)
    return lambda batch: {"action": t.clone(), "extra": torch.zeros(len(rows), 3)}


def test_uniform_ensemble_is_mean_of_logits():
    ens = EnsembleTeacher([const_teacher([[2.0, 0.0]]), const_teacher([[0.0, 4.0]])], "uniform", heads=["action"])
    out = ens({})
    assert list(out) == ["action"]
    assert torch.allclose(out["action"], torch.tensor([[1.0, 2.0]]))


def test_per_sample_uses_labels_and_views():
    a = const_teacher([[L3, 0.0], [L3, 0.0], [L3, 0.0], [L3, 0.0]])  # 2 samples x 2 views
    b = const_teacher([[0.0, 0.0]] * 4)
    ens = EnsembleTeacher([a, b], "per-sample", heads=["action"])
    out = ens({"labels": {"action": torch.tensor([0, 1])}})["action"]
    # sample 0 (rows 0, 1): weights 0.6/0.4; sample 1 (rows 2, 3): 1/3, 2/3
    assert torch.allclose(out[:, 0], torch.tensor([0.6 * L3, 0.6 * L3, L3 / 3, L3 / 3]), atol=1e-6)
    with pytest.raises(KeyError, match="labels"):
        ens({})


def test_per_sample_unlabelled_rows_fall_back_to_dataset_weights():
    a = const_teacher([[L3, 0.0], [L3, 0.0]])
    b = const_teacher([[0.0, 0.0]] * 2)
    fixed = {"action": torch.tensor([0.1, 0.9])}
    ens = EnsembleTeacher([a, b], "per-sample", weights=fixed, heads=["action"])
    out = ens({"labels": {"action": torch.tensor([0, -1])}})["action"]
    assert torch.allclose(out[:, 0], torch.tensor([0.6 * L3, 0.1 * L3]), atol=1e-6)
    # a batch in which no sample has a label has no entry for the head: every row falls back
    out = ens({"labels": {}})["action"]
    assert torch.allclose(out[:, 0], torch.tensor([0.1 * L3, 0.1 * L3]), atol=1e-6)
    # without dataset weights, an unlabelled sample is weighted uniformly
    out = EnsembleTeacher([a, b], "per-sample", heads=["action"])({"labels": {}})["action"]
    assert torch.allclose(out[:, 0], torch.tensor([0.5 * L3, 0.5 * L3]), atol=1e-6)


def test_dataset_weights_are_fixed_and_required():
    a, b = const_teacher([[1.0, 0.0]]), const_teacher([[0.0, 1.0]])
    with pytest.raises(ValueError, match="dataset weights"):
        EnsembleTeacher([a, b], "dataset")
    with pytest.raises(ValueError, match=r"\(3,\) weights for 2 teachers"):
        EnsembleTeacher([a, b], "dataset", weights={"action": torch.ones(3) / 3})
    ens = EnsembleTeacher([a, b], "dataset", weights={"action": torch.tensor([0.25, 0.75])}, heads=["action"])
    assert torch.allclose(ens({})["action"], torch.tensor([[0.25, 0.75]]))


def test_unknown_scheme_and_missing_head():
    with pytest.raises(ValueError, match="per-sample"):
        EnsembleTeacher([const_teacher([[0.0]])], "mean")
    ens = EnsembleTeacher([const_teacher([[0.0, 1.0]]), lambda b: {"verb": torch.zeros(1, 2)}], heads=["action"],
                          names=["rgb", "flow"])
    with pytest.raises(KeyError, match="teacher flow has no head 'action'"):
        ens({})


class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.drop = nn.Dropout(0.9)

    def forward(self, batch):
        return {"action": self.fc(self.drop(batch["x"]))}


def test_module_teachers_are_frozen_in_eval_and_give_no_graph():
    torch.manual_seed(0)
    t1, t2 = Linear(), Linear()
    ens = EnsembleTeacher([t1, t2], "uniform")
    ens.train()  # an owner switching to train mode must not wake the teachers (dropout)
    assert not t1.training and not t2.training
    assert all(not p.requires_grad for p in ens.parameters())
    x = torch.randn(5, 4, requires_grad=True)
    out = ens({"x": x})["action"]
    assert not out.requires_grad
    expected = 0.5 * (t1.fc(x) + t2.fc(x))
    assert torch.allclose(out, expected.detach(), atol=1e-6)
    # deterministic: dropout stays off
    assert torch.equal(out, ens({"x": x})["action"])


def test_freeze():
    m = freeze(nn.Linear(2, 2).train())
    assert not m.training and not any(p.requires_grad for p in m.parameters())


def test_a_model_teacher_is_a_frozen_model_predictor():
    """One concept: `ModelPredictor` runs a model on its modality's batch entry (the trainer's
    held-out evaluation, `evaluate`); `ModelTeacher` is the same, frozen."""
    from types import SimpleNamespace

    from egodistill.distill.ensemble import ModelTeacher
    from egodistill.engine.evaluate import ModelPredictor

    cfg = SimpleNamespace(modality="layout", frame_step=1)
    student = nn.Linear(2, 2).train()
    ModelPredictor(student, cfg)
    assert student.training and all(p.requires_grad for p in student.parameters())  # left as it was
    teacher = ModelTeacher(nn.Linear(2, 2).train(), cfg, name="runs/t")
    assert isinstance(teacher, ModelPredictor) and teacher.name == "runs/t" and teacher.modality == "layout"
    assert not teacher.train().training and not any(p.requires_grad for p in teacher.parameters())
