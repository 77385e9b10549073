"""distill.unlabelled: unlabelled samples from a split or from windows of videos, and the
epoch mix of labelled and unlabelled samples."""
from __future__ import annotations

import dataclasses

import pytest
import yaml

from egodistill.config import ConfigError, config_from_dict, load_config
from egodistill.data.annotations import build_reader
from egodistill.data.records import Sample
from egodistill.distill.unlabelled import UnlabelledMix, check_ids, drop_videos, mix, unlabelled_samples, window_samples


class Store:
    def __init__(self, videos: dict[str, tuple[int, int]]):
        self.videos = videos  # id -> (first frame, count)

    def video_ids(self):
        return list(self.videos)

    def first_frame(self, v):
        return self.videos[v][0]

    def num_frames(self, v):
        return self.videos[v][1]


def test_windows_cover_each_video_from_its_first_frame():
    store = Store({"a": (1, 10), "b": (0, 3)})
    got = window_samples(store, ["a", "b"], 4, 3, where="rgb store x.h5")
    assert [(s.id, s.start_frame, s.stop_frame) for s in got] == [
        ("a@1-4", 1, 4), ("a@4-7", 4, 7), ("a@7-10", 7, 10),  # the last window ends at the last frame
        ("b@0-2", 0, 2),  # shorter than a window: one window of all its frames
    ]
    assert all(s.labels == {} for s in got)
    with pytest.raises(KeyError, match=r"video 'c' is not in the rgb store x\.h5"):
        window_samples(store, ["c"], 4, 4, where="rgb store x.h5")


def test_unlabelled_split_and_windows_from_the_config(synth_unlabelled_root):
    cfg = config_from_dict(yaml.safe_load((synth_unlabelled_root / "data.yaml").read_text()))
    reader = build_reader(cfg)
    assert unlabelled_samples(cfg, reader) == []
    cfg.distill.unlabelled = dataclasses.replace(cfg.distill.unlabelled, split="validation")
    got = unlabelled_samples(cfg, reader)  # a labelled split read as unlabelled: labels dropped
    assert [s.id for s in got] == [s.id for s in reader.samples("validation")] and all(not s.labels for s in got)
    video = reader.samples("unlabelled")[0].video_id
    cfg.distill.unlabelled = dataclasses.replace(cfg.distill.unlabelled, split="unlabelled", videos=[video], window=8)
    got = unlabelled_samples(cfg, reader)
    windows = [s for s in got if "@" in s.id]
    assert len(got) == len(reader.samples("unlabelled")) + len(windows) and windows
    assert all(s.video_id == video and s.num_frames == 8 for s in windows[:-1])
    assert [w.start_frame for w in windows[:2]] == [1, 9]  # hop 0 = window: side by side


def test_ids_must_be_unique_and_held_out_videos_are_dropped():
    a, b = Sample("x", "v1", 1, 4), Sample("y", "v2", 1, 4)
    check_ids([a], [b], "distill.unlabelled")
    with pytest.raises(ValueError, match="sample id 'x' \\(video v1\\) appears twice"):
        check_ids([a], [Sample("x", "v1", 5, 8)], "distill.unlabelled")
    assert drop_videos([a, b], {"v2"}) == ([a], 1)


def test_window_config_is_checked_at_load():
    with pytest.raises(ConfigError, match="distill.unlabelled.window"):
        load_config(None, ["distill.unlabelled.videos=[P01_01]"])
    with pytest.raises(ConfigError, match="distill.unlabelled.ratio"):
        load_config(None, ["distill.unlabelled.ratio=-1"])


class Base:
    def __init__(self, n):
        self.samples = list(range(n))
        self.epoch = None

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return i

    def set_epoch(self, e):
        self.epoch = e


def test_mix_takes_every_labelled_sample_and_cycles_through_the_unlabelled():
    base = Base(3 + 5)  # 3 labelled, 5 unlabelled
    assert mix(base, 3, 0.0, seed=0) is base and mix(Base(3), 3, 2.0, seed=0).__class__ is Base
    m = mix(base, 3, 1.0, seed=0)  # 3 unlabelled per epoch
    assert isinstance(m, UnlabelledMix) and len(m) == 6
    seen = []
    for e in range(5):
        m.set_epoch(e)
        assert base.epoch == e
        items = m.__getitems__(list(range(len(m))))
        assert items[:3] == [0, 1, 2] and all(3 <= i < 8 for i in items[3:])
        seen += items[3:]
    # passes of 5: each unlabelled sample once per pass, whatever the epoch boundaries
    for p in range(3):
        assert sorted(seen[5 * p: 5 * p + 5]) == [3, 4, 5, 6, 7]
    again = mix(Base(8), 3, 1.0, seed=0)
    again.set_epoch(3)
    m.set_epoch(3)
    assert [again[i] for i in range(6)] == [m[i] for i in range(6)]  # depends only on (seed, epoch)
    with pytest.raises(IndexError):
        m.base_index(6)
    big = mix(Base(3 + 2), 3, 2.0, seed=0)  # more per epoch than there are: repeats across passes
    assert len(big) == 9 and sorted(big[i] for i in range(3, 9)) == [3, 3, 3, 4, 4, 4]
