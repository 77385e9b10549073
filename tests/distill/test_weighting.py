"""Ensemble weighting schemes (METHOD.md §4) against hand-computed values.

With tau = 1, softmin_i(CE_i) = p_i(y) / sum_j p_j(y): the weights are the teachers'
probabilities of the true class, normalised. The cases below use logits [ln 3, 0] (p = 3/4, 1/4)
and [0, 0] (p = 1/2, 1/2) so every weight has a closed form.
"""
from __future__ import annotations

import math

import pytest
import torch

from egodistill.distill.weighting import combine, dataset_weights, per_sample_weights, softmin, uniform_weights

L3 = math.log(3.0)


def two_teachers():
    z1 = {"action": torch.tensor([[L3, 0.0], [L3, 0.0]])}  # p(0)=3/4
    z2 = {"action": torch.tensor([[0.0, 0.0], [0.0, 0.0]])}  # p(0)=1/2
    return z1, z2


def test_uniform():
    w = uniform_weights(3, ["verb", "noun"])
    assert torch.allclose(w["verb"], torch.full((3,), 1 / 3))
    z = [{"verb": torch.full((1, 2), float(i))} for i in range(3)]
    assert torch.allclose(combine(z, {"verb": w["verb"]})["verb"], torch.full((1, 2), 1.0))


def test_per_sample_hand_computed():
    z1, z2 = two_teachers()
    labels = {"action": torch.tensor([0, 1])}
    w = per_sample_weights([z1, z2], labels, tau=1.0)["action"]  # [2 teachers, 2 samples]
    # sample 0, y=0: p = 3/4 vs 1/2 -> 0.6, 0.4; sample 1, y=1: p = 1/4 vs 1/2 -> 1/3, 2/3
    assert torch.allclose(w, torch.tensor([[0.6, 1 / 3], [0.4, 2 / 3]]), atol=1e-6)
    # tau = 1/2 squares the probabilities: 9/16 vs 1/4 -> 9/13
    w_half = per_sample_weights([z1, z2], labels, tau=0.5)["action"]
    assert w_half[0, 0].item() == pytest.approx(9 / 13, abs=1e-6)
    t = combine([z1, z2], {"action": w})["action"]
    assert torch.allclose(t, torch.tensor([[0.6 * L3, 0.0], [L3 / 3, 0.0]]), atol=1e-6)


def test_per_sample_unknown_label_is_uniform():
    z1, z2 = two_teachers()
    w = per_sample_weights([z1, z2], {"action": torch.tensor([0, -1])})["action"]
    assert torch.allclose(w[:, 1], torch.tensor([0.5, 0.5]))


def test_dataset_hand_computed():
    z1, z2 = two_teachers()
    labels = {"action": torch.tensor([0, 1])}
    w = dataset_weights([z1, z2], labels, tau=1.0)["action"]  # [2]
    # exp(-mean CE) = geometric mean of p(y): sqrt(3/4 * 1/4) vs sqrt(1/2 * 1/2)
    g1, g2 = math.sqrt(0.75 * 0.25), 0.5
    assert w.shape == (2,)
    assert w[0].item() == pytest.approx(g1 / (g1 + g2), abs=1e-6)
    assert w[0].item() == pytest.approx(0.464102, abs=1e-6)
    assert w.sum().item() == pytest.approx(1.0)


def test_dataset_weights_per_head_and_temperature():
    z1 = {"verb": torch.tensor([[L3, 0.0]]), "noun": torch.tensor([[0.0, 0.0]])}
    z2 = {"verb": torch.tensor([[0.0, 0.0]]), "noun": torch.tensor([[L3, 0.0]])}
    labels = {"verb": torch.tensor([0]), "noun": torch.tensor([0])}
    w = dataset_weights([z1, z2], labels)
    assert torch.allclose(w["verb"], torch.tensor([0.6, 0.4]))
    assert torch.allclose(w["noun"], torch.tensor([0.4, 0.6]))
    # a large tau flattens towards uniform, a small one picks the best teacher
    assert torch.allclose(dataset_weights([z1, z2], labels, tau=1e4)["verb"], torch.tensor([0.5, 0.5]), atol=1e-4)
    assert dataset_weights([z1, z2], labels, tau=1e-3)["verb"][0].item() == pytest.approx(1.0)


def test_softmin_is_softmax_of_negative():
    v = torch.tensor([1.0, 2.0, 4.0])
    assert torch.allclose(softmin(v, 2.0), torch.softmax(-v / 2.0, 0))


def test_combine_is_sum_of_logits_not_probabilities():
    z1 = {"a": torch.tensor([[2.0, 0.0]])}
    z2 = {"a": torch.tensor([[0.0, 4.0]])}
    t = combine([z1, z2], {"a": torch.tensor([0.25, 0.75])})["a"]
    assert torch.allclose(t, torch.tensor([[0.5, 3.0]]))


def test_errors_name_the_problem():
    z1, z2 = two_teachers()
    with pytest.raises(KeyError, match="teacher 1 has no head 'verb'"):
        combine([{"verb": torch.zeros(1, 2)}, z2], {"verb": torch.tensor([0.5, 0.5])})
    with pytest.raises(ValueError, match="3 weights for 2 teachers"):
        combine([z1, z2], {"action": torch.ones(3) / 3})
    with pytest.raises(ValueError, match="tau"):
        softmin(torch.zeros(2), 0.0)
