"""Metrics against values computed by hand on small crafted logits (ties included), against a
brute-force reference on random tied scores, and on the real EPIC-100 validation annotations."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from egodistill.config import Config
from egodistill.data.annotations import build_reader
from egodistill.data.records import DatasetInfo, Sample
from egodistill.engine.metrics import (
    binomial_ci95,
    compute_metrics,
    confusion_matrix,
    epic_action_rank,
    epic_action_scores,
    expected_calibration_error,
    reliability,
    selection_metric,
    true_class_rank,
)

from conftest import FIXTURES  # tests/fixtures, inside the repository

REAL = FIXTURES / "real"
EPIC = REAL / "epic_kitchens_100"


def _sample(i: int, verb: int, noun: int, participant: str = "P01") -> Sample:
    return Sample(id=f"s{i}", video_id=f"{participant}_01", start_frame=1, stop_frame=10,
                  labels={"verb": verb, "noun": noun}, participant=participant)


def _epic_info(tail_verbs=(), tail_nouns=(), unseen=()) -> DatasetInfo:
    return DatasetInfo(name="toy", heads={"verb": ["a", "b", "c"], "noun": ["x", "y", "z"]},
                       tail_classes={"verb": set(tail_verbs), "noun": set(tail_nouns)},
                       unseen_participants=set(unseen), action_heads=("verb", "noun"))


def _log(p: list[float]) -> list[float]:
    # log-probabilities: their softmax is p again (up to rounding)
    return [math.log(x) for x in p]


# -------------------------------------------------------------------------------------------
# Ranks and ties
# -------------------------------------------------------------------------------------------


def test_rank_breaks_ties_by_lower_class_id():
    scores = torch.tensor([[1.0, 2.0, 2.0, 0.0]])
    assert true_class_rank(scores, torch.tensor([1])).item() == 0  # tied with 2 but lower id
    assert true_class_rank(scores, torch.tensor([2])).item() == 1  # class 1 ties and comes first
    assert true_class_rank(scores, torch.tensor([0])).item() == 2
    assert true_class_rank(scores, torch.tensor([3])).item() == 3


def test_all_equal_scores_rank_by_id():
    scores = torch.zeros(1, 6)
    assert [true_class_rank(scores, torch.tensor([c])).item() for c in range(6)] == [0, 1, 2, 3, 4, 5]


def _brute_rank(row: list[float], label: int) -> int:
    order = sorted(range(len(row)), key=lambda c: (-row[c], c))
    return order.index(label)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), min_size=7, max_size=7), min_size=1, max_size=6), st.data())
def test_rank_matches_brute_force_on_tied_integer_scores(rows, data):
    labels = [data.draw(st.integers(0, 6)) for _ in rows]
    ranks = true_class_rank(torch.tensor(rows, dtype=torch.float64), torch.tensor(labels))
    assert ranks.tolist() == [_brute_rank(r, y) for r, y in zip(rows, labels)]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=4, max_size=4), st.lists(st.integers(1, 4), min_size=5, max_size=5),
       st.integers(0, 3), st.integers(0, 4), st.integers(1, 5))
def test_action_rank_matches_brute_force(pv, pn, v, n, top):
    """Ranking of (verb, noun) pairs by p(v) p(n) over the top-`top` verbs and nouns, ties by id."""
    verb = torch.tensor([pv], dtype=torch.float64)
    noun = torch.tensor([pn], dtype=torch.float64)
    rank, conf = epic_action_rank(verb, noun, torch.tensor([v]), torch.tensor([n]), top=top)
    top_v = sorted(range(4), key=lambda c: (-pv[c], c))[:top]
    top_n = sorted(range(5), key=lambda c: (-pn[c], c))[:top]
    pairs = sorted(((pv[a] * pn[b], a * 1000 + b) for a in top_v for b in top_n), key=lambda t: (-t[0], t[1]))
    ids = [i for _, i in pairs]
    expected = ids.index(v * 1000 + n) if v * 1000 + n in ids else None
    if expected is None:
        assert rank.item() > len(ids)
    else:
        assert rank.item() == expected
    assert conf.item() == pytest.approx(pairs[0][0])
    # capped: exact below the cap, at least the cap above it
    for cap in (1, 2, 3):
        capped, _ = epic_action_rank(verb, noun, torch.tensor([v]), torch.tensor([n]), top=top, cap=cap)
        if expected is not None and expected < cap:
            assert capped.item() == expected
        else:
            assert capped.item() >= cap


def test_action_scores_by_hand():
    # p(verb) = [.5, .3, .2], p(noun) = [.6, .3, .1]: products sorted by hand
    scores, ids = epic_action_scores(torch.tensor([[0.5, 0.3, 0.2]], dtype=torch.float64),
                                     torch.tensor([[0.6, 0.3, 0.1]], dtype=torch.float64))
    assert ids[0].tolist() == [0, 1000, 1, 2000, 1001, 2001, 2, 1002, 2002]
    assert scores[0].tolist() == pytest.approx([.30, .18, .15, .12, .09, .06, .05, .03, .02])


def test_action_candidates_are_limited_to_top_verbs_and_nouns():
    verb = torch.tensor([[0.5, 0.3, 0.2]], dtype=torch.float64)
    noun = torch.tensor([[0.6, 0.3, 0.1]], dtype=torch.float64)
    # with top=2, verb 2 is not a candidate: the action (2, 0) is never right even though
    # its score (.12) would rank it 4th among all nine.
    rank, _ = epic_action_rank(verb, noun, torch.tensor([2]), torch.tensor([0]), top=2)
    assert rank.item() > 4
    rank, _ = epic_action_rank(verb, noun, torch.tensor([1]), torch.tensor([1]), top=2)
    assert rank.item() == 3  # (0,0) .30, (1,0) .18, (0,1) .15, (1,1) .09


# -------------------------------------------------------------------------------------------
# ECE and intervals
# -------------------------------------------------------------------------------------------


def test_ece_by_hand():
    conf = torch.tensor([0.95, 0.95, 0.5, 0.5])
    correct = torch.tensor([True, False, True, True])
    # bin 14: accuracy .5, confidence .95 -> gap .45; bin 7: accuracy 1, confidence .5 -> gap .5
    assert expected_calibration_error(conf, correct) == pytest.approx(0.5 * 0.45 + 0.5 * 0.5)


def test_ece_bins_hold_upper_edge():
    edges = torch.linspace(0, 1, 16, dtype=torch.float64)
    conf = torch.stack([edges[2], edges[2] + 1e-9, torch.tensor(1.0, dtype=torch.float64), edges[1] - 1e-9])
    counts = reliability(conf, torch.ones(4, dtype=torch.bool))["count"]
    # edges[2] = 2/15 lies in (1/15, 2/15] -> bin 1; just above -> bin 2; 1.0 -> bin 14; just
    # below 1/15 -> bin 0
    assert counts[0] == 1 and counts[1] == 1 and counts[2] == 1 and counts[14] == 1
    assert counts.sum() == 4


def test_perfect_calibration_has_zero_ece():
    conf = torch.full((10,), 0.7, dtype=torch.float64)
    correct = torch.tensor([True] * 7 + [False] * 3)
    assert expected_calibration_error(conf, correct) == pytest.approx(0.0, abs=1e-12)


def test_ci95():
    assert binomial_ci95(0.5, 4) == pytest.approx(0.49)
    assert binomial_ci95(1.0, 10) == 0.0
    assert binomial_ci95(0.3, 0) == 0.0


# -------------------------------------------------------------------------------------------
# compute_metrics on crafted logits
# -------------------------------------------------------------------------------------------


def test_epic_metrics_by_hand():
    info = _epic_info(tail_verbs={2}, tail_nouns={2}, unseen={"P03"})
    verb = torch.tensor([_log([.5, .3, .2])] * 4, dtype=torch.float64)
    noun = torch.tensor([_log([.6, .3, .1])] * 4, dtype=torch.float64)
    samples = [
        _sample(0, 0, 0),             # verb ok, noun ok, action rank 0
        _sample(1, 1, 1),             # verb rank 1, noun rank 1, action rank 4 (top-5 only)
        _sample(2, 2, 1, "P03"),      # verb rank 2, noun rank 1, action rank 5; tail verb; unseen
        _sample(3, 0, 2, "P03"),      # verb ok, noun rank 2, action rank 6; tail noun; unseen
    ]
    m = compute_metrics({"verb": verb, "noun": noun}, samples, info)
    assert m["num_samples"] == 4
    assert m["verb_top1"] == pytest.approx(50.0)
    assert m["verb_top1_ci95"] == pytest.approx(49.0)
    assert m["noun_top1"] == pytest.approx(25.0)
    assert m["verb_top5"] == m["noun_top5"] == pytest.approx(100.0)  # only 3 classes
    assert m["action_top1"] == pytest.approx(25.0)
    assert m["action_top5"] == pytest.approx(50.0)
    assert m["action_top5_ci95"] == pytest.approx(49.0)
    # tail: verb tail = sample 2 (wrong); noun tail = sample 3 (wrong); action tail = 2 OR 3
    assert m["verb_tail_n"] == 1 and m["verb_tail_top1"] == 0.0
    assert m["noun_tail_n"] == 1 and m["noun_tail_top1"] == 0.0
    assert m["action_tail_n"] == 2 and m["action_tail_top1"] == 0.0
    # unseen participants: samples 2, 3 -> verb right on 3 only
    assert m["verb_unseen_n"] == 2 and m["verb_unseen_top1"] == pytest.approx(50.0)
    assert m["action_unseen_top1"] == 0.0
    # ECE: verb confidence .5 everywhere (bin 7), accuracy .5 -> 0; noun confidence .6 with
    # accuracy .25 -> 35; action confidence .30 with accuracy .25 -> 5 (x100)
    assert m["verb_ece"] == pytest.approx(0.0, abs=1e-9)
    assert m["noun_ece"] == pytest.approx(35.0)
    assert m["action_ece"] == pytest.approx(5.0)


def test_action_ties_rank_by_action_id():
    info = _epic_info()
    half = _log([.5, .5, 1e-9])
    verb = torch.tensor([half] * 2, dtype=torch.float64)
    noun = torch.tensor([half] * 2, dtype=torch.float64)
    # (0,0), (0,1), (1,0), (1,1) all score .25: ranked 0, 1, 2, 3 by id
    m = compute_metrics({"verb": verb, "noun": noun}, [_sample(0, 0, 0), _sample(1, 1, 1)], info)
    assert m["action_top1"] == pytest.approx(50.0)  # (0,0) is first; (1,1) is 4th
    assert m["verb_top1"] == pytest.approx(50.0)  # tie: verb 0 wins
    assert m["action_top5"] == pytest.approx(100.0)


def test_unlabelled_samples_are_left_out():
    info = _epic_info()
    verb = torch.tensor([[5.0, 0, 0], [0, 5.0, 0]])
    noun = torch.tensor([[5.0, 0, 0], [0, 5.0, 0]])
    samples = [_sample(0, 0, 0), Sample(id="t", video_id="P01_01", start_frame=1, stop_frame=5)]
    m = compute_metrics({"verb": verb, "noun": noun}, samples, info)
    assert m["num_samples"] == 1
    assert m["verb_top1"] == 100.0 and m["action_top1"] == 100.0


def test_ssv2_style_action_head():
    info = DatasetInfo(name="ssv2", heads={"action": ["a", "b", "c", "d", "e", "f"]})
    logits = torch.tensor([[6, 5, 4, 3, 2, 1], [6, 5, 4, 3, 2, 1], [1, 1, 1, 1, 1, 1.0]])
    samples = [Sample(id=str(i), video_id=str(i), start_frame=1, stop_frame=-1, labels={"action": y})
               for i, y in enumerate([0, 5, 3])]
    m = compute_metrics({"action": logits}, samples, info)
    assert m["action_top1"] == pytest.approx(100 / 3)
    assert m["action_top5"] == pytest.approx(200 / 3)  # class 5 is 6th; tie row: class 3 is 4th
    assert "verb_top1" not in m


def test_head_mismatch_is_explained():
    info = _epic_info()
    samples = [_sample(0, 0, 0)]
    with pytest.raises(ValueError, match="outputs 5 classes but dataset toy has 3 noun classes"):
        compute_metrics({"verb": torch.zeros(1, 3), "noun": torch.zeros(1, 5)}, samples, info)
    with pytest.raises(ValueError, match="no 'noun' head"):
        compute_metrics({"verb": torch.zeros(1, 3), "action": torch.zeros(1, 5)}, samples, info)


def test_selection_metric_and_confusion():
    assert selection_metric({"verb_top1": 10.0, "noun_top1": 30.0, "action_top1": 5.0}) == 5.0
    assert selection_metric({"verb_top1": 10.0, "noun_top1": 30.0, "verb_tail_top1": 99.0}) == 20.0
    assert selection_metric({"verb_top1": 10.0}, "verb_top1") == 10.0
    with pytest.raises(KeyError, match="select_metric"):
        selection_metric({"verb_top1": 10.0}, "noun_top5")
    cm = confusion_matrix(torch.tensor([[2.0, 1], [0, 1], [3, 0], [0, 0]]), torch.tensor([0, 0, 1, -1]), 2)
    assert cm.tolist() == [[1, 1], [1, 0]]


# -------------------------------------------------------------------------------------------
# Real EPIC-100 validation annotations
# -------------------------------------------------------------------------------------------


def test_real_epic_validation_one_hot_logits():
    cfg = Config()
    cfg.data.reader = "epic100"
    cfg.data.files = {
        "train": str(EPIC / "UDA_annotations" / "EPIC_100_uda_source_train.head400.csv"),
        "validation": str(EPIC / "EPIC_100_validation.csv"),
        "verb_classes": str(EPIC / "EPIC_100_verb_classes.csv"),
        "noun_classes": str(EPIC / "EPIC_100_noun_classes.csv"),
        "tail_verbs": str(EPIC / "EPIC_100_tail_verbs.csv"),
        "tail_nouns": str(EPIC / "EPIC_100_tail_nouns.csv"),
        "unseen_participants": str(EPIC / "EPIC_100_unseen_participant_ids_validation.csv"),
    }
    reader = build_reader(cfg)
    info = reader.info()
    samples = reader.samples("validation")
    n = len(samples)
    verbs = torch.tensor([s.labels["verb"] for s in samples])
    nouns = torch.tensor([s.labels["noun"] for s in samples])
    verb_logits = torch.nn.functional.one_hot(verbs, 97).float() * 10
    noun_logits = torch.nn.functional.one_hot(nouns, 300).float() * 10
    # every other sample: the noun is wrong (shifted by one class)
    wrong = torch.arange(n) % 2 == 1
    noun_logits[wrong] = noun_logits[wrong].roll(1, dims=1)
    m = compute_metrics({"verb": verb_logits, "noun": noun_logits}, samples, info)
    assert m["num_samples"] == n
    assert m["verb_top1"] == 100.0
    assert m["noun_top1"] == pytest.approx(100.0 * (n - int(wrong.sum())) / n)
    assert m["action_top1"] == pytest.approx(m["noun_top1"])
    unseen = sum(s.participant in info.unseen_participants for s in samples)
    assert m["verb_unseen_n"] == unseen > 0
    tail_v = sum(s.labels["verb"] in info.tail_classes["verb"] for s in samples)
    tail_n = sum(s.labels["noun"] in info.tail_classes["noun"] for s in samples)
    tail_a = sum(s.labels["verb"] in info.tail_classes["verb"] or s.labels["noun"] in info.tail_classes["noun"]
                 for s in samples)
    assert (m["verb_tail_n"], m["noun_tail_n"], m["action_tail_n"]) == (tail_v, tail_n, tail_a)
    assert tail_a >= max(tail_v, tail_n) > 0
