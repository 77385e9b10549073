"""Teacher runs: head checks, the shared held-out split, dataset weights on a loader."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from egodistill.distill.teachers import check_heads, compute_dataset_weights, shared_heldout_ids

L3 = math.log(3.0)


def run(tmp_path: Path, name: str, heads: dict[str, int], heldout: list[str] | None = None, teacher=None):
    d = tmp_path / name
    d.mkdir()
    if heldout is not None:
        (d / "heldout.json").write_text(json.dumps({"ids": heldout}))
    return SimpleNamespace(run_dir=d, heads=heads, modality=name, teacher=teacher)


def test_class_count_mismatch_names_both_counts(tmp_path):
    t = run(tmp_path, "rgb", {"verb": 97, "noun": 300})
    check_heads([t], {"verb": 97, "noun": 300})
    check_heads([t], {"verb": 97})  # a teacher may have extra heads
    with pytest.raises(ValueError, match=r"head 'noun': teacher .*rgb has 300 classes, the student has 4"):
        check_heads([t], {"verb": 97, "noun": 4})
    with pytest.raises(ValueError, match="has no head 'action'"):
        check_heads([t], {"action": 174})


def test_heldout_split_must_be_shared(tmp_path):
    a = run(tmp_path, "rgb", {}, ["x", "y"])
    b = run(tmp_path, "flow", {}, ["y", "x"])
    assert shared_heldout_ids([a, b]) == ["x", "y"]
    c = run(tmp_path, "audio", {}, ["x", "z"])
    with pytest.raises(ValueError, match=r"different held-out splits.*only in the first: \['y'\].*\['z'\]"):
        shared_heldout_ids([a, c])
    d = run(tmp_path, "layout", {})
    with pytest.raises(FileNotFoundError, match="heldout.json"):
        shared_heldout_ids([a, d])


def test_dataset_weights_averages_views_and_records_per_head(tmp_path):
    # two samples, two views each; teacher 1 is right about both (p(y) = 3/4), teacher 2 unsure
    def t1(batch):
        return {"action": torch.tensor([[L3, 0.0], [L3, 0.0], [0.0, L3], [0.0, L3]])}

    def t2(batch):
        return {"action": torch.zeros(4, 2)}

    batch = {"id": ["a", "b"], "index": torch.tensor([0, 1]), "labels": {"action": torch.tensor([0, 1])}}
    runs = [run(tmp_path, "rgb", {}, teacher=t1), run(tmp_path, "flow", {}, teacher=t2)]
    rec = compute_dataset_weights(runs, [batch], ["action"], tau=1.0)
    assert rec["modalities"] == ["rgb", "flow"] and rec["samples"] == 2
    assert rec["mean_ce"]["action"] == pytest.approx([-math.log(0.75), math.log(2)], abs=1e-6)
    assert rec["weights"]["action"] == pytest.approx([0.6, 0.4], abs=1e-6)
    json.dumps(rec)  # the record is plain JSON


def test_teacher_logits_come_from_predict_logits_in_dataset_order(tmp_path):
    """One teacher-logits function: the dataset weights run the teachers through the engine's
    `predict_logits` (rows in dataset order by batch index, labels carried along)."""
    from egodistill.distill import teachers as teachers_module

    assert not hasattr(teachers_module, "teachers_logits_on")

    def t1(batch):  # right about whichever sample has label 0 in row 0
        return {"action": torch.tensor([[L3, 0.0], [0.0, L3]])[batch["index"]]}

    def t2(batch):
        return {"action": torch.zeros(len(batch["id"]), 2)}

    runs = [run(tmp_path, "rgb", {}, teacher=t1), run(tmp_path, "flow", {}, teacher=t2)]
    batches = [{"id": ["b"], "index": torch.tensor([1]), "labels": {"action": torch.tensor([1])}},
               {"id": ["a"], "index": torch.tensor([0]), "labels": {"action": torch.tensor([0])}}]
    rec = compute_dataset_weights(runs, batches, ["action"], tau=1.0)
    assert rec["samples"] == 2
    assert rec["mean_ce"]["action"] == pytest.approx([-math.log(0.75), math.log(2)], abs=1e-6)


@pytest.mark.parametrize("record, match", [
    ({"teachers": ["a", "b"], "weights": {"verb": [0.5]}}, "head 'verb' must be a list of 2 numbers"),
    ({"teachers": ["a", "b"], "weights": {"verb": "0.5,0.5"}}, "head 'verb' must be a list of 2 numbers"),
    ({"teachers": ["a", "b"]}, "not a dataset weights record"),
    ({"teachers": ["a", "b"], "weights": {"verb": [0.5, 0.5]}}, "no weights for head.s. noun .it has verb"),
])
def test_a_damaged_dataset_weights_record_names_the_file_and_the_head(tmp_path, record, match):
    from egodistill.distill.teachers import DATASET_WEIGHTS_FILE, read_dataset_weights

    (tmp_path / DATASET_WEIGHTS_FILE).write_text(json.dumps(record))
    with pytest.raises(ValueError, match=match) as err:
        read_dataset_weights(tmp_path, heads=["verb", "noun"])
    assert DATASET_WEIGHTS_FILE in str(err.value)


@pytest.mark.parametrize("temperature", [{"noun": -1.0}, {"noun": "hot"}, None])
def test_a_damaged_calibration_record_names_the_file(tmp_path, temperature):
    from egodistill.distill.teachers import CALIBRATION_FILE, read_ensemble_temperatures

    (tmp_path / CALIBRATION_FILE).write_text(json.dumps({"teachers": ["a"], "temperature": temperature}))
    with pytest.raises(ValueError, match="not an ensemble calibration record") as err:
        read_ensemble_temperatures(tmp_path)
    assert CALIBRATION_FILE in str(err.value)
