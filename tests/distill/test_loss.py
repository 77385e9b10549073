"""KD and ground-truth losses (METHOD.md §3) against hand-computed values and torch's kl_div."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from egodistill.distill.loss import active_heads, distill_loss, gt_loss, kd_loss, kl_batchmean


def test_kl_hand_computed_t1():
    # teacher softmax [3/4, 1/4], student softmax [1/2, 1/2]
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0]])
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # 0.130812
    assert kl_batchmean(student, teacher, 1.0).item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.130812, abs=1e-6)


def test_kl_hand_computed_temperature_scales_by_t_squared():
    # T = 2: teacher logits / 2 = [ln(3)/2, 0] -> softmax [sqrt3/(1+sqrt3), 1/(1+sqrt3)]
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0]])
    p = math.sqrt(3) / (1 + math.sqrt(3))
    expected = 4.0 * (p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5))
    assert expected == pytest.approx(0.145363, abs=1e-6)
    assert kl_batchmean(student, teacher, 2.0).item() == pytest.approx(expected, abs=1e-6)


def test_kl_is_batch_mean_not_element_mean():
    student = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])  # second row: KL 0
    single = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert kl_batchmean(student, teacher).item() == pytest.approx(single / 2, abs=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_kd_matches_torch_kl_div(temperature):
    g = torch.Generator().manual_seed(0)
    student = {"verb": torch.randn(8, 5, generator=g), "noun": torch.randn(8, 7, generator=g)}
    teacher = {"verb": 3 * torch.randn(8, 5, generator=g), "noun": torch.randn(8, 7, generator=g)}
    ours = kd_loss(student, teacher, temperature)
    ref = 0.0
    for h in student:
        ref += temperature**2 * F.kl_div(
            F.log_softmax(student[h] / temperature, -1),
            F.softmax(teacher[h] / temperature, -1),
            reduction="batchmean",
        )
    assert ours.item() == pytest.approx(ref.item() / 2, rel=1e-5)


def test_kd_zero_when_student_equals_teacher_and_grad_flows_to_student_only():
    s = torch.randn(4, 6, requires_grad=True)
    t = s.detach().clone()
    assert kd_loss({"a": s}, {"a": t}).item() == pytest.approx(0.0, abs=1e-6)
    s2 = torch.randn(4, 6, requires_grad=True)
    kd_loss({"a": s2}, {"a": t}).backward()
    # d/ds KL(p_t||p_s) = (p_s - p_t) / B
    expected = (torch.softmax(s2.detach(), -1) - torch.softmax(t, -1)) / 4
    assert torch.allclose(s2.grad, expected, atol=1e-6)


def test_gt_loss_weighted_mean_over_heads():
    student = {"verb": torch.tensor([[math.log(3.0), 0.0]]), "noun": torch.tensor([[0.0, 0.0]])}
    labels = {"verb": torch.tensor([0]), "noun": torch.tensor([1])}
    ce_verb, ce_noun = -math.log(0.75), math.log(2.0)
    got = gt_loss(student, labels, {"verb": 1.0, "noun": 0.5})
    assert got.item() == pytest.approx((1.0 * ce_verb + 0.5 * ce_noun) / 2, abs=1e-6)


def test_inactive_heads_are_excluded():
    assert active_heads(["verb", "noun"], {"noun": 0.0}) == ["verb"]
    assert active_heads({"verb": 3, "noun": 0}) == ["verb"]
    student = {"verb": torch.tensor([[math.log(3.0), 0.0]]), "noun": torch.randn(1, 4)}
    teacher = {"verb": torch.tensor([[0.0, 0.0]]), "noun": torch.randn(1, 4)}
    labels = {"verb": torch.tensor([0]), "noun": torch.tensor([2])}
    loss, parts = distill_loss(student, teacher, labels, head_weights={"noun": 0.0})
    assert loss.item() == pytest.approx(kl_batchmean(student["verb"], teacher["verb"]).item(), abs=1e-6)


def test_total_is_weighted_sum_of_parts():
    g = torch.Generator().manual_seed(1)
    student = {"action": torch.randn(5, 4, generator=g)}
    teacher = {"action": torch.randn(5, 4, generator=g)}
    labels = {"action": torch.tensor([0, 1, 2, 3, 0])}
    loss, parts = distill_loss(student, teacher, labels, temperature=2.0, alpha_kd=0.7, alpha_gt=0.3)
    expected = 0.7 * kd_loss(student, teacher, 2.0) + 0.3 * F.cross_entropy(student["action"], labels["action"])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(parts) == {"kd", "gt"}


def test_bad_shapes_and_missing_heads_raise_clearly():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        kl_batchmean(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(KeyError, match="noun"):
        kd_loss({"noun": torch.zeros(1, 2)}, {"verb": torch.zeros(1, 2)})
    with pytest.raises(ValueError, match="temperature"):
        kl_batchmean(torch.zeros(1, 2), torch.zeros(1, 2), 0.0)


def test_unlabelled_sample_trains_on_the_kd_term_alone():
    """A distillation batch with an unlabelled sample (label -1) gives no index error; its loss
    is the KD term alone, and with alpha_gt = 0 the label term is not computed at all."""
    g = torch.Generator().manual_seed(3)
    student = {"verb": torch.randn(2, 3, generator=g), "noun": torch.randn(2, 4, generator=g)}
    teacher = {"verb": torch.randn(2, 3, generator=g), "noun": torch.randn(2, 4, generator=g)}
    labels = {"verb": torch.tensor([1, -1]), "noun": torch.tensor([2, -1])}
    loss, parts = distill_loss(student, teacher, labels, alpha_gt=0.0)
    assert loss.item() == pytest.approx(kd_loss(student, teacher).item(), abs=1e-6) and set(parts) == {"kd"}
    loss, parts = distill_loss(student, teacher, labels, alpha_gt=1.0)
    gt = (F.cross_entropy(student["verb"][:1], labels["verb"][:1]) + F.cross_entropy(student["noun"][:1], labels["noun"][:1])) / 2
    assert parts["gt"].item() == pytest.approx(gt.item(), abs=1e-6)
    assert loss.item() == pytest.approx((kd_loss(student, teacher) + gt).item(), abs=1e-6)
    # a batch of unlabelled samples only (collate writes no label entry): the KD term alone
    loss, parts = distill_loss(student, teacher, {}, alpha_gt=1.0)
    assert loss.item() == pytest.approx(kd_loss(student, teacher).item(), abs=1e-6) and parts["gt"].item() == 0.0


def test_feature_loss_is_relative_to_the_teachers_mean_square():
    from egodistill.distill.loss import feature_loss

    teacher = torch.tensor([[1.0, -1.0], [2.0, 0.0]])  # mean square 1.5
    assert float(feature_loss(torch.zeros(2, 2), teacher)) == pytest.approx(1.0)
    assert float(feature_loss(teacher.clone(), teacher)) == 0.0
    assert float(feature_loss(teacher + 1.0, teacher)) == pytest.approx(1.0 / 1.5)
    s = torch.tensor([[0.5, 0.0], [1.0, 3.0]])
    assert float(feature_loss(10 * s, 10 * teacher)) == pytest.approx(float(feature_loss(s, teacher)))  # scale-free
    student = torch.zeros(2, 2, requires_grad=True)
    feature_loss(student, teacher.requires_grad_()).backward()
    assert teacher.grad is None and student.grad is not None  # the teacher is a target, not trained
    with pytest.raises(ValueError, match=r"student features \(2, 3\) and teacher features \(2, 2\)"):
        feature_loss(torch.zeros(2, 3), teacher)
