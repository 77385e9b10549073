"""engine.losses: the one label loss of supervised training and distillation (label -1 ignored)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from egodistill.engine.losses import expand_labels, head_labels, label_loss


def test_expand_labels_sample_major():
    assert expand_labels(torch.tensor([3, 5]), 6).tolist() == [3, 3, 3, 5, 5, 5]
    with pytest.raises(ValueError, match="do not divide"):
        expand_labels(torch.tensor([1, 2]), 3)


def test_head_labels_missing_head_is_unlabelled():
    assert head_labels({}, "verb", 3, torch.device("cpu")).tolist() == [-1, -1, -1]
    assert head_labels(None, "verb", 2, torch.device("cpu")).tolist() == [-1, -1]
    assert head_labels({"verb": torch.tensor([4])}, "verb", 2, torch.device("cpu")).tolist() == [4, 4]


def test_label_loss_ignores_unlabelled_rows_and_keeps_the_graph():
    z = torch.tensor([[math.log(3.0), 0.0], [5.0, -5.0], [0.0, 0.0]], requires_grad=True)
    loss, parts = label_loss({"verb": z}, {"verb": torch.tensor([0, -1, 1])}, ["verb"])
    expected = (-math.log(0.75) + math.log(2.0)) / 2  # mean over the two labelled rows
    assert loss.item() == pytest.approx(expected, abs=1e-6) and parts["ce_verb"].item() == pytest.approx(expected, abs=1e-6)
    loss.backward()
    assert torch.all(z.grad[1] == 0)  # the unlabelled row gets no gradient from the label loss
    w = torch.zeros(2, 2, requires_grad=True)
    zero, _ = label_loss({"verb": w}, {"verb": torch.tensor([-1, -1])}, ["verb"])
    assert zero.item() == 0.0 and zero.requires_grad
    assert torch.allclose(label_loss({"noun": w}, {"noun": torch.tensor([1, 0])}, ["noun"])[0],
                          F.cross_entropy(w, torch.tensor([1, 0])))
    with pytest.raises(KeyError, match="no logits for head 'noun'"):
        label_loss({"verb": w}, {}, ["noun"])
