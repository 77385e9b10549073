"""Held-out split: by video, deterministic, recorded; on the real EPIC-100 training annotations."""
from __future__ import annotations

import pytest

from egodistill.config import Config
from egodistill.data.annotations import build_reader
from egodistill.data.records import Sample
from egodistill.engine.heldout import (
    heldout_videos,
    read_heldout_ids,
    split_by_ids,
    split_heldout,
    write_heldout,
)

from conftest import FIXTURES  # tests/fixtures, inside the repository

REAL = FIXTURES / "real"
EPIC = REAL / "epic_kitchens_100"


def _samples(videos: int, per_video: int) -> list[Sample]:
    return [Sample(id=f"V{v:02d}_{i}", video_id=f"V{v:02d}", start_frame=1, stop_frame=10, labels={"verb": 0})
            for i in range(per_video) for v in range(videos)]  # interleaved, as files often are


def test_split_is_by_video_deterministic_and_keeps_order():
    samples = _samples(20, 3)
    train, held = split_heldout(samples, 0.1, seed=0)
    assert len({s.video_id for s in held}) == 2  # 10% of 20 videos
    assert not {s.video_id for s in train} & {s.video_id for s in held}
    assert len(train) + len(held) == len(samples)
    assert [s.id for s in train] == [s.id for s in samples if s in train]  # file order
    assert split_heldout(samples, 0.1, seed=0) == (train, held)
    assert split_heldout(list(reversed(samples)), 0.1, seed=0)[1] == list(reversed(held))  # order-free choice
    seeds = {tuple(heldout_videos([s.video_id for s in samples], 0.1, seed)) for seed in range(8)}
    assert len(seeds) > 1  # the seed changes the choice


def test_edge_fractions():
    samples = _samples(3, 2)
    assert split_heldout(samples, 0.0, seed=1)[1] == []
    train, held = split_heldout(samples, 0.01, seed=1)
    assert len({s.video_id for s in held}) == 1  # at least one video when fraction > 0
    train, held = split_heldout(samples, 0.9, seed=1)
    assert len({s.video_id for s in train}) == 1  # always one video left to train on
    assert split_heldout(_samples(1, 4), 0.5, seed=0)[1] == []
    with pytest.raises(ValueError, match="heldout_fraction"):
        split_heldout(samples, 1.0, seed=0)


def test_record_round_trip(tmp_path):
    samples = _samples(10, 2)
    train, held = split_heldout(samples, 0.2, seed=3)
    write_heldout(tmp_path, held, fraction=0.2, seed=3)
    ids = read_heldout_ids(tmp_path)
    assert split_by_ids(samples, ids) == (train, held)
    with pytest.raises(KeyError, match="not in the training annotations"):
        split_by_ids(samples[:3], ids)


def test_real_epic_training_annotations():
    cfg = Config()
    cfg.data.files = {
        "train": str(EPIC / "UDA_annotations" / "EPIC_100_uda_source_train.head400.csv"),
        "verb_classes": str(EPIC / "EPIC_100_verb_classes.csv"),
        "noun_classes": str(EPIC / "EPIC_100_noun_classes.csv"),
    }
    samples = build_reader(cfg).samples("train")
    videos = sorted({s.video_id for s in samples})
    train, held = split_heldout(samples, 0.1, seed=0)
    held_videos = {s.video_id for s in held}
    assert len(held_videos) == max(1, round(0.1 * len(videos)))
    assert held and train
    assert not held_videos & {s.video_id for s in train}
    assert sorted(s.id for s in train + held) == sorted(s.id for s in samples)
