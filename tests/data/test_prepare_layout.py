"""`prepare layout`: the real Something-Else annotations.json and the hand-object detections JSON."""
from __future__ import annotations

import json

import cv2
import h5py
import numpy as np
import pytest

from egodistill import cli
from egodistill.data.prepare.layout import StoreFrameSizes, prepare_layout
from egodistill.data.stores import LayoutStore, RGBWriter

from conftest import FIXTURES  # tests/fixtures, inside the repository

ANNOTATIONS = FIXTURES / "real" / "something_else" / "annotations.json"


def test_real_something_else_annotations_load_completely(tmp_path):
    out = tmp_path / "layout.h5"
    s = prepare_layout(ANNOTATIONS, out, format="something_else", show_progress=False)
    assert (s.videos, s.frames) == (13, 555)
    assert any("largest box extent" in w for w in s.warnings)
    store = LayoutStore(out)
    raw = json.loads(ANNOTATIONS.read_text())
    assert sorted(store.video_ids()) == sorted(raw)
    total = hands = 0
    for vid in store.video_ids():
        n = store.num_frames(vid)
        assert store.first_frame(vid) == 1 and n == len(raw[vid])
        got = store.read(vid, list(range(1, n + 1)))
        total += int(got["valid"].sum())
        hands += int((got["category"] == 1).sum())
        b = got["boxes"][got["valid"]]
        assert ((b >= 0) & (b <= 1)).all() and (b[:, 0] <= b[:, 2]).all() and (b[:, 1] <= b[:, 3]).all()
        assert (got["category"][~got["valid"]] == 0).all() and (got["side"] == 2).all() and (got["state"] == 5).all()
        # Hands first in every frame.
        for t in range(n):
            cats = got["category"][t][got["valid"][t]].tolist()
            assert cats == sorted(cats)
    n_hands = sum(lab["standard_category"] == "hand" for fr in sum(raw.values(), []) for lab in fr["labels"])
    assert (total, hands) == (1062, n_hands)


def test_something_else_sizes_give_exact_normalisation(tmp_path):
    # Video "2", frame 1 (README §4): object box x1=97.6495..., y1=11.8893..., x2=427, y2=239.9285...; hand box.
    sizes = tmp_path / "sizes.json"
    raw = json.loads(ANNOTATIONS.read_text())
    sizes.write_text(json.dumps({vid: [427, 240] for vid in raw}))
    prepare_layout(ANNOTATIONS, tmp_path / "layout.h5", format="something_else", sizes=sizes, video_ids=["2"],
                   show_progress=False)
    got = LayoutStore(tmp_path / "layout.h5").read("2", [1])
    assert got["category"][0, :3].tolist() == [1, 2, 0]
    np.testing.assert_allclose(got["boxes"][0, 1], [97.64950730138266 / 427, 11.889318166856967 / 240, 1.0,
                                                    239.92858832368972 / 240], rtol=1e-6)
    np.testing.assert_allclose(got["boxes"][0, 0], [210.1160330781122 / 427, 78.65516045335991 / 240,
                                                    345.4329005999551 / 427, 209.68758889799403 / 240], rtol=1e-6)
    with pytest.raises(KeyError, match="no frame size for video 2"):
        prepare_layout(ANNOTATIONS, tmp_path / "l2.h5", format="something_else", sizes={"3": [1, 1]},
                       video_ids=["2"], show_progress=False)


@pytest.mark.parametrize("layout", ["ours", "authors"])
def test_something_else_sizes_from_an_rgb_store(tmp_path, layout):
    # Video "2" is 427 x 240: the store records it (ours) or its first JPEG header says it (authors').
    blob = cv2.imencode(".jpg", np.zeros((240, 427, 3), np.uint8))[1].tobytes()
    rgb = tmp_path / "rgb.h5"
    if layout == "ours":
        with RGBWriter(rgb) as w:
            w.add_video("2", [blob] * 3, fps=12.0, first_frame=1, height=240, width=427)
    else:
        with h5py.File(rgb, "w") as f:
            f.create_dataset("2", (3,), dtype=h5py.vlen_dtype(np.uint8))[:] = [np.frombuffer(blob, np.uint8)] * 3
    sizes = StoreFrameSizes(rgb)
    assert dict(sizes) == {"2": (427, 240)}
    out = tmp_path / "layout.h5"
    assert cli.main(["prepare", "layout", str(ANNOTATIONS), str(out), "--format", "something_else",
                     "--sizes-from", str(rgb), "--videos", "2", "--quiet"]) == 0
    got = LayoutStore(out).read("2", [1])
    np.testing.assert_allclose(got["boxes"][0, 1], [97.64950730138266 / 427, 11.889318166856967 / 240, 1.0,
                                                    239.92858832368972 / 240], rtol=1e-6)
    with pytest.raises(KeyError, match=r"rgb\.h5 \(frame sizes\): no frame size for video 2003"):
        prepare_layout(ANNOTATIONS, tmp_path / "l2.h5", format="something_else", sizes=sizes, video_ids=["2003"],
                       show_progress=False)


def _detections() -> dict:
    return {"P01_01": {"num_frames": 4, "frames": {
        "1": {"hands": [{"box": [0.1, 0.2, 0.3, 0.4], "score": 0.99, "side": "left", "state": 3},
                        {"box": [0.5, 0.5, 0.7, 0.9], "score": 0.3, "side": "right", "state": 0}],
              "objects": [{"box": [0.0, 0.0, 0.2, 0.2], "score": 0.5},
                          {"box": [0.6, 0.6, 1.0, 1.0], "score": 0.95}]},
        "3": {"hands": [], "objects": [{"box": [0.2, 0.2, 0.4, 0.4], "score": 0.8}]}}}}


def test_hand_object_json_known_answer(tmp_path):
    src = tmp_path / "det.json"
    src.write_text(json.dumps(_detections()))
    s = prepare_layout(src, tmp_path / "layout.h5", format="hand_object", max_boxes=3, show_progress=False)
    assert (s.videos, s.frames) == (1, 4) and any("1 box(es) beyond max_boxes=3" in w for w in s.warnings)
    store = LayoutStore(tmp_path / "layout.h5")
    assert (store.first_frame("P01_01"), store.num_frames("P01_01"), store.max_boxes("P01_01")) == (1, 4, 3)
    got = store.read("P01_01", [1, 2, 3, 4])
    # Frame 1: both hands, then the best object (0.95); the 0.5 object is beyond max_boxes.
    assert got["category"][0].tolist() == [1, 1, 2]
    assert got["side"][0].tolist() == [0, 1, 2] and got["state"][0].tolist() == [3, 0, 5]
    np.testing.assert_allclose(got["score"][0], [0.99, 0.3, 0.95], rtol=1e-6)
    np.testing.assert_allclose(got["boxes"][0, 2], [0.6, 0.6, 1.0, 1.0])
    assert not got["valid"][1].any() and not got["valid"][3].any()  # frames without detections
    assert got["valid"][2].tolist() == [True, False, False] and got["category"][2].tolist() == [2, 0, 0]
    # Thresholds drop low-scoring hands and objects.
    prepare_layout(src, tmp_path / "t.h5", format="hand_object", hand_threshold=0.5, object_threshold=0.9,
                   show_progress=False)
    t = LayoutStore(tmp_path / "t.h5").read("P01_01", [1])
    assert t["category"][0, :3].tolist() == [1, 2, 0] and t["valid"][0].sum() == 2


@pytest.mark.parametrize("change, message", [
    (lambda d: d["P01_01"]["frames"]["1"]["hands"][0].update(box=[0.1, 0.2, 1.3, 0.4]),
     r"video P01_01, frame 1, hand 0: box .* normalised"),
    (lambda d: d["P01_01"]["frames"]["1"]["hands"][0].update(side="up"), r"frame 1, hand 0: key 'side'"),
    (lambda d: d["P01_01"]["frames"]["1"]["hands"][0].update(state=7), r"frame 1, hand 0: key 'state'"),
    (lambda d: d["P01_01"]["frames"].update({"9": {}}), r"frame 9: outside the video's frames 1..4"),
    (lambda d: d["P01_01"]["frames"]["3"]["objects"][0].update(score="high"), r"frame 3, object 0, score"),
])
def test_hand_object_bad_input_is_named(tmp_path, change, message):
    dets = _detections()
    change(dets)
    src = tmp_path / "det.json"
    src.write_text(json.dumps(dets))
    with pytest.raises(ValueError, match=message):
        prepare_layout(src, tmp_path / "layout.h5", format="hand_object", show_progress=False)
    assert not (tmp_path / "layout.h5").exists()


def test_cli_layout_and_bad_json(tmp_path, capsys):
    src = tmp_path / "det.json"
    src.write_text(json.dumps(_detections()))
    assert cli.main(["prepare", "layout", str(src), str(tmp_path / "l.h5"), "--format", "hand_object", "--quiet"]) == 0
    assert "prepare layout (hand_object): 1 videos (0 skipped), 4 frames" in capsys.readouterr().out
    src.write_text('{"P01_01": {"frames": ')
    assert cli.main(["prepare", "layout", str(src), str(tmp_path / "l.h5"), "--format", "hand_object"]) == 1
    assert "det.json: not valid JSON" in capsys.readouterr().err
