"""Teacher-logit cache file: round trip, atomic writes, fingerprints, replay choice."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from egodistill.distill.cache import CacheWriter, TeacherCache, fingerprint_text, replay_choice
from egodistill.engine.checkpoint import file_digest

HEADS = {"verb": 4, "noun": 6}


def make(tmp_path, fp=None, n=3, k=2, d=9):
    rng = np.random.default_rng(0)
    views = rng.normal(size=(n, k, d))
    logits = {h: rng.normal(size=(n, k, c)).astype(np.float32) for h, c in HEADS.items()}
    path = tmp_path / "cache.h5"
    with CacheWriter(path, fp or {"teachers": ["a"], "k": k}, [f"s{i}" for i in range(n)], k, d, HEADS) as w:
        # first sample one view at a time, the rest as one contiguous block of rows
        for j in range(k):
            w.write(0, j, views[0, j], {h: v[0, j] for h, v in logits.items()})
        w.write_rows(k, views[1:].reshape(-1, d), {h: v[1:].reshape(-1, v.shape[-1]) for h, v in logits.items()})
    return path, views, logits


def test_round_trip(tmp_path):
    path, views, logits = make(tmp_path)
    cache = TeacherCache(path)
    assert cache.ids == ["s0", "s1", "s2"] and cache.views == 2 and cache.heads == HEADS
    for i in range(3):
        for k in range(2):
            assert np.array_equal(cache.view(i, k), views[i, k])  # float64: exact
            got = cache.logits(i, k)
            for h in HEADS:
                assert got[h].dtype == np.float16
                assert np.array_equal(got[h], logits[h][i, k].astype(np.float16))
    assert not (tmp_path / "cache.h5.tmp").exists()


def test_fingerprint_match_is_order_independent(tmp_path):
    path, _, _ = make(tmp_path, fp={"teachers": ["a", "b"], "k": 2, "weighting": "dataset"})
    cache = TeacherCache(path)
    assert cache.matches({"weighting": "dataset", "k": 2, "teachers": ["a", "b"]})
    assert not cache.matches({"weighting": "dataset", "k": 2, "teachers": ["b", "a"]})
    assert not cache.matches({"weighting": "uniform", "k": 2, "teachers": ["a", "b"]})
    assert cache.fingerprint["weighting"] == "dataset"


def test_interrupted_write_leaves_nothing(tmp_path):
    path = tmp_path / "cache.h5"
    with pytest.raises(RuntimeError, match="boom"):
        with CacheWriter(path, {}, ["a", "b"], 2, 3, HEADS) as w:
            w.write(0, 0, np.zeros(3), {h: np.zeros(c) for h, c in HEADS.items()})
            raise RuntimeError("boom")
    assert not path.exists() and not (tmp_path / "cache.h5.tmp").exists()


def test_incomplete_cache_is_refused(tmp_path):
    path = tmp_path / "cache.h5"
    with pytest.raises(RuntimeError, match=r"3 views never written \(first: sample 0, view 1\)"):
        with CacheWriter(path, {}, ["a", "b"], 2, 3, HEADS) as w:
            w.write(0, 0, np.zeros(3), {h: np.zeros(c) for h, c in HEADS.items()})
    assert not path.exists()


def test_bad_rows_raise_clearly(tmp_path):
    w = CacheWriter(tmp_path / "c.h5", {}, ["a"], 1, 3, HEADS)
    with pytest.raises(KeyError, match="noun"):
        w.write(0, 0, np.zeros(3), {"verb": np.zeros(4)})
    with pytest.raises(ValueError, match=r"'verb' must be \[1, 4\]"):
        w.write(0, 0, np.zeros(3), {"verb": np.zeros(5), "noun": np.zeros(6)})
    with pytest.raises(IndexError):
        w.write_rows(1, np.zeros((1, 3)), {h: np.zeros((1, c)) for h, c in HEADS.items()})
    w.abort()
    cache_path, _, _ = make(tmp_path)
    with pytest.raises(IndexError, match="view 2 out of range"):
        TeacherCache(cache_path).view(0, 2)


def test_not_a_cache(tmp_path):
    import h5py

    p = tmp_path / "other.h5"
    with h5py.File(p, "w") as f:
        f.attrs["format"] = "x"
    with pytest.raises(ValueError, match="not a teacher cache"):
        TeacherCache(p)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        TeacherCache(tmp_path / "missing.h5")


def test_pickles_for_workers(tmp_path):
    path, views, _ = make(tmp_path)
    cache = TeacherCache(path)
    cache.view(0, 0)  # opens the file
    clone = pickle.loads(pickle.dumps(cache))
    assert np.array_equal(clone.view(2, 1), views[2, 1])


def test_file_digest_tracks_content(tmp_path):
    p = tmp_path / "ann.csv"
    p.write_text("a,b\n1,2\n")
    d1 = file_digest(p)
    p.write_text("a,b\n1,3\n")
    d2 = file_digest(p)
    assert d1["size"] == d2["size"] and d1["sha256"] != d2["sha256"]
    assert fingerprint_text({"f": d1}) != fingerprint_text({"f": d2})


def test_replay_choice_is_deterministic_and_uses_every_view():
    picks = [replay_choice(0, 3, i, 4) for i in range(400)]
    assert picks == [replay_choice(0, 3, i, 4) for i in range(400)]
    assert set(picks) == {0, 1, 2, 3}
    assert picks != [replay_choice(0, 4, i, 4) for i in range(400)]  # a new epoch, new choices
    assert all(replay_choice(1, 0, i, 1) == 0 for i in range(10))


def test_cache_fingerprint_follows_the_views_not_the_batch_dtype(tmp_path):
    from types import SimpleNamespace

    from egodistill.pipelines.distill import cache_fingerprint
    from egodistill.config import Config, DataConfig

    run = tmp_path / "teacher"
    run.mkdir()
    (run / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "rgb.h5").write_bytes(b"store")
    (tmp_path / "train.csv").write_bytes(b"annotations")
    teachers = [SimpleNamespace(run_dir=str(run), modality="rgb")]

    def fp(**data) -> str:
        cfg = Config(data=DataConfig(root=str(tmp_path), files={"train": "train.csv"}, stores={"rgb": "rgb.h5"}, **data))
        return fingerprint_text(cache_fingerprint(cfg, teachers, None, ["a", "b"]))

    assert fp() == fp(uint8_frames=False)  # the same normalised input either way
    assert fp() != fp(num_frames=8)  # other views: other logits
    assert fp() != fp(scale_range=[1.0, 1.2])
