"""`prepare flow`: EPIC quantisation, frame pairing, and flow of a known translation."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from egodistill.data.prepare.flow import dequantise, flow_pairs, prepare_flow, quantise, resolve_method
from egodistill.data.stores import FlowStore, RGBWriter


def test_quantisation_is_epics_linear_map():
    q = quantise(np.array([0.0, 20.0, -20.0, 100.0, -100.0, 10.0, -10.0]), 20.0)
    assert q.dtype == np.uint8 and q.tolist() == [128, 255, 0, 255, 0, 191, 64]
    # Within the bound, dequantise inverts to half a step (bound / 127.5 / 2).
    x = np.linspace(-20, 20, 101)
    assert np.abs(dequantise(quantise(x, 20.0), 20.0) - x).max() <= 20 / 127.5 / 2 + 1e-6


def test_flow_pairs_follow_the_stride_and_epic_count():
    assert flow_pairs(5, 2) == [(0, 2), (2, 4)]
    assert flow_pairs(4, 2) == [(0, 2), (2, 3)]  # the last pair ends at the last frame
    assert flow_pairs(1, 2) == [(0, 0)]
    assert flow_pairs(3, 1) == [(0, 1), (1, 2), (1, 2)]
    assert len(flow_pairs(99135, 2)) == 49567  # EPIC P01_01: rgb_n_frames -> flow_n_frames
    with pytest.raises(ValueError):
        resolve_method("lucas")


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (h, w)).astype(np.float32), (0, 0), 2.0)
    return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def test_translation_gives_the_expected_quantised_flow(tmp_path):
    """Frame i is a texture shifted right by i px and down by i/2 px: u = +stride, v = +stride/2."""
    big = _texture(120, 160)
    frames = []
    for i in range(8):
        dx, dy = i, i // 2 * 1.0 + (i % 2) * 0.5
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        img = cv2.warpAffine(big, m, (160, 120), borderMode=cv2.BORDER_REFLECT)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), [cv2.IMWRITE_JPEG_QUALITY, 98])
        frames.append(buf.tobytes())
    with RGBWriter(tmp_path / "rgb.h5") as w:
        w.add_video("P01_01", frames, fps=30.0, first_frame=1)
    s = prepare_flow(tmp_path / "rgb.h5", tmp_path / "flow.h5", stride=2, bound=20.0, show_progress=False)
    assert (s.videos, s.frames) == (1, 4)
    store = FlowStore(tmp_path / "flow.h5")
    assert (store.num_frames("P01_01"), store.first_frame("P01_01"), store.stride("P01_01"),
            store.bound("P01_01"), store.fps("P01_01")) == (4, 1, 2, 20.0, 15.0)
    us, vs = store.read_frames("P01_01", [1, 2, 3])
    for ub, vb in zip(us, vs):
        u = cv2.imdecode(np.frombuffer(ub, np.uint8), cv2.IMREAD_GRAYSCALE)[30:90, 40:120]
        v = cv2.imdecode(np.frombuffer(vb, np.uint8), cv2.IMREAD_GRAYSCALE)[30:90, 40:120]
        # u = +2 px -> 128 + 2/20*127.5 = 140.75; v = +1 px -> 134.4
        assert np.median(u) == pytest.approx(140.75, abs=2)
        assert np.median(v) == pytest.approx(134.4, abs=2)
    # Rerun skips; a missing video is named.
    again = prepare_flow(tmp_path / "rgb.h5", tmp_path / "flow.h5", show_progress=False)
    assert (again.videos, again.skipped) == (0, 1)
    with pytest.raises(KeyError, match=r"rgb\.h5: video\(s\) P09_01 not in the rgb store"):
        prepare_flow(tmp_path / "rgb.h5", tmp_path / "f2.h5", video_ids=["P09_01"], show_progress=False)


def test_corrupt_rgb_frame_names_video_and_frame_and_keeps_output(tmp_path):
    good = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))[1].tobytes()
    bad = good[:2] + bytes(len(good) - 4) + good[-2:]  # markers only
    with RGBWriter(tmp_path / "rgb.h5") as w:
        w.add_video("a", [good] * 3, fps=10.0)
        w.add_video("b", [good, bad, good], fps=10.0)
    prepare_flow(tmp_path / "rgb.h5", tmp_path / "flow.h5", video_ids=["a"], show_progress=False)
    before = (tmp_path / "flow.h5").read_bytes()
    with pytest.raises(ValueError, match=r"video b, frame 2: corrupt JPEG"):
        prepare_flow(tmp_path / "rgb.h5", tmp_path / "flow.h5", stride=1, show_progress=False)
    assert (tmp_path / "flow.h5").read_bytes() == before
