"""HDF5 stores: round trips, frame numbering, the authors' layouts, atomic/resumable writers,
and readers in DataLoader worker processes."""
from __future__ import annotations

import pickle

import cv2
import h5py
import numpy as np
import pytest
import torch

from egodistill.data.stores import (
    AudioStore, AudioWriter, FlowStore, FlowWriter, LayoutStore, LayoutWriter, RGBStore, RGBWriter,
    check_jpeg, jpeg_size, open_store, tmp_path_of,
)


def _jpeg(value: int, h: int = 12, w: int = 20, grey: bool = False) -> bytes:
    img = np.full((h, w) if grey else (h, w, 3), value, np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


def _decode_mean(blob: bytes) -> float:
    return float(cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_UNCHANGED).mean())


def _rgb_store(path, videos: dict[str, int], first: int = 1, fps: float = 50.0) -> None:
    with RGBWriter(path) as w:
        for vid, n in videos.items():
            w.add_video(vid, [_jpeg(10 * i) for i in range(n)], fps=fps, first_frame=first)


def test_rgb_round_trip_keeps_numbering_and_order(tmp_path):
    path = tmp_path / "rgb.h5"
    blobs = [_jpeg(10 * i) for i in range(6)]
    with RGBWriter(path) as w:
        w.add_video("P01_01", blobs, fps=59.94, first_frame=1)
        w.add_video("P01_02", blobs[:3], fps=50.0, first_frame=0)
    assert not tmp_path_of(path).exists()
    s = RGBStore(path)
    assert s.video_ids() == ["P01_01", "P01_02"] and "P01_01" in s and "P09" not in s
    assert (s.num_frames("P01_01"), s.first_frame("P01_01"), s.fps("P01_01")) == (6, 1, 59.94)
    assert s.frame_size("P01_01") == (12, 20)
    assert s.first_frame("P01_02") == 0
    # Frame number f of a 1-based video is element f - 1; order and repeats as asked.
    got = s.read_frames("P01_01", [6, 1, 6, 3])
    assert got == [blobs[5], blobs[0], blobs[5], blobs[2]]
    assert s.read_frames("P01_02", [0]) == [blobs[0]]
    assert s.layout == "ours" and open_store("rgb", path).read_frames("P01_01", [2]) == [blobs[1]]


@pytest.mark.parametrize("numbers", [
    [3, 4, 5, 6, 7],  # a consecutive run: one slice read
    [4, 5, 7, 8, 10],  # nearly consecutive: the run, then picked
    [2, 5, 8, 11, 14, 17],  # evenly spaced (a clip's stride): one strided read
    [17, 2, 8, 14, 5, 11, 2],  # the same, asked out of order with a repeat
    [1, 2, 9, 20],  # irregular: point selection
    [12],
])
def test_every_read_path_returns_the_frames_asked_for(tmp_path, numbers):
    path = tmp_path / "rgb.h5"
    blobs = [_jpeg(i, w=8 + i) for i in range(20)]  # every frame a different size
    with RGBWriter(path) as w:
        w.add_video("v", blobs, fps=30.0, first_frame=1)
    assert RGBStore(path).read_frames("v", numbers) == [blobs[n - 1] for n in numbers]


def test_missing_video_and_frame_name_store_video_and_frame(tmp_path):
    path = tmp_path / "rgb.h5"
    _rgb_store(path, {"P01_01": 4})
    s = RGBStore(path)
    with pytest.raises(KeyError, match=r"rgb\.h5.*'P02_01'"):
        s.read_frames("P02_01", [1])
    with pytest.raises(KeyError, match=r"'P01_01'.*frame 5"):
        s.read_frames("P01_01", [1, 5])
    with pytest.raises(KeyError, match=r"frame 0"):
        s.read_frames("P01_01", [0])
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        RGBStore(tmp_path / "nope.h5")
    with pytest.raises(ValueError, match="expected a flow store"):
        FlowStore(path).video_ids()


def test_flow_round_trip_and_attributes(tmp_path):
    path = tmp_path / "flow.h5"
    us = [_jpeg(100 + i, grey=True) for i in range(4)]
    vs = [_jpeg(150 - i, grey=True) for i in range(4)]
    with FlowWriter(path) as w:
        w.add_video("P01_01", us, vs, fps=30.0, first_frame=1, stride=2, bound=20.0)
    s = open_store("flow", path)
    assert isinstance(s, FlowStore)
    assert (s.num_frames("P01_01"), s.first_frame("P01_01"), s.stride("P01_01"), s.bound("P01_01")) == (4, 1, 2, 20.0)
    u, v = s.read_frames("P01_01", [4, 2])
    assert u == [us[3], us[1]] and v == [vs[3], vs[1]]
    with pytest.raises(KeyError, match="flow frame 5"):
        s.read_frames("P01_01", [5])
    with pytest.raises(ValueError, match="3 u frames but 2 v"):
        with FlowWriter(tmp_path / "bad.h5") as w:
            w.add_video("x", us[:3], vs[:2], fps=1.0)


def test_audio_round_trip_zero_pads_and_int16(tmp_path):
    wave = np.linspace(-0.5, 0.5, 1000, dtype=np.float32)
    for dtype, tol in (("float32", 0.0), ("int16", 1 / 32767)):
        path = tmp_path / f"audio_{dtype}.h5"
        with AudioWriter(path, dtype=dtype) as w:
            w.add_video("v1", wave, sample_rate=24000)
        s = AudioStore(path)
        assert (s.sample_rate("v1"), s.num_samples("v1")) == (24000, 1000)
        np.testing.assert_allclose(s.read("v1", 10, 20), wave[10:20], atol=tol)
        out = s.read("v1", -5, 5)
        assert out.dtype == np.float32 and out.shape == (10,)
        np.testing.assert_array_equal(out[:5], 0)
        np.testing.assert_allclose(out[5:], wave[:5], atol=tol)
        tail = s.read("v1", 995, 1010)
        np.testing.assert_allclose(tail[:5], wave[995:], atol=tol)
        np.testing.assert_array_equal(tail[5:], 0)
        assert s.read("v1", 2000, 2003).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="mono"):
        with AudioWriter(tmp_path / "st.h5") as w:
            w.add_video("v", np.zeros((2, 5), np.float32), sample_rate=8000)


def test_layout_round_trip_and_codes(tmp_path):
    path = tmp_path / "layout.h5"
    f, n = 5, 3
    boxes = np.zeros((f, n, 4), np.float32)
    boxes[:, 0] = [0.1, 0.2, 0.3, 0.4]
    boxes[2, 1] = [0.5, 0.5, 0.9, 1.0]
    category = np.zeros((f, n), np.int64)
    category[:, 0], category[2, 1] = 1, 2
    valid = category > 0
    score = np.where(valid, 0.9, 0).astype(np.float32)
    side = np.full((f, n), 2)
    side[:, 0] = 1
    state = np.full((f, n), 5)
    state[:, 0] = 3
    with LayoutWriter(path) as w:
        w.add_video("P01_01", boxes, category, score, side, state, valid, first_frame=1)
    s = LayoutStore(path)
    assert (s.first_frame("P01_01"), s.num_frames("P01_01"), s.max_boxes("P01_01")) == (1, 5, 3)
    out = s.read("P01_01", [3, 1, 3])
    assert out["boxes"].dtype == np.float32 and out["category"].dtype == np.int64 and out["valid"].dtype == bool
    np.testing.assert_array_equal(out["boxes"], boxes[[2, 0, 2]])
    np.testing.assert_array_equal(out["category"], category[[2, 0, 2]])
    assert out["category"][0].tolist() == [1, 2, 0] and out["side"][0].tolist() == [1, 2, 2]
    assert out["state"][1].tolist() == [3, 5, 5] and out["valid"][1].tolist() == [True, False, False]
    with pytest.raises(KeyError, match=r"'P01_01': frame 6"):
        s.read("P01_01", [6])
    bad = boxes.copy()
    bad[1, 0, 2] = 1.5
    with pytest.raises(ValueError, match=r"frame 2, box 0.*normalised"):
        with LayoutWriter(tmp_path / "bad.h5") as w:
            w.add_video("v", bad, category, score, side, state, valid)


def test_writer_failure_leaves_previous_output_and_resumes(tmp_path):
    path = tmp_path / "rgb.h5"
    _rgb_store(path, {"a": 3})
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="boom"):
        with RGBWriter(path) as w:
            assert w.has_video("a")  # the existing output was copied in
            w.add_video("b", [_jpeg(1)] * 2, fps=1.0)
            raise RuntimeError("boom")
    assert path.read_bytes() == before and RGBStore(path).video_ids() == ["a"]
    assert tmp_path_of(path).exists()  # kept for the next run
    # An entry left without `complete` (killed mid-write) is dropped on resume.
    with h5py.File(tmp_path_of(path), "a") as f:
        f.create_dataset("half", data=np.zeros(3))
    with RGBWriter(path) as w:
        assert w.video_ids() == ["a", "b"] and not w.has_video("half")
        w.add_video("c", [_jpeg(2)], fps=1.0)
    assert RGBStore(path).video_ids() == ["a", "b", "c"] and not tmp_path_of(path).exists()
    # resume=False starts from nothing.
    with RGBWriter(path, resume=False) as w:
        w.add_video("z", [_jpeg(3)], fps=1.0)
    assert RGBStore(path).video_ids() == ["z"]


def test_incomplete_entries_are_invisible_to_readers(tmp_path):
    path = tmp_path / "rgb.h5"
    _rgb_store(path, {"a": 2})
    with h5py.File(path, "a") as f:
        f.create_dataset("b", data=np.zeros(2))
    s = RGBStore(path)
    assert s.video_ids() == ["a"] and "b" not in s
    with pytest.raises(KeyError, match="'b'"):
        s.num_frames("b")


def test_bad_jpeg_and_video_id_are_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"video 'v', frame 2: not a JPEG"):
        with RGBWriter(tmp_path / "rgb.h5") as w:
            w.add_video("v", [_jpeg(1), b"GIF89a...."], fps=1.0)
    with pytest.raises(ValueError, match="truncated JPEG"):
        check_jpeg(_jpeg(1)[:-40], "x")
    with pytest.raises(ValueError, match="bad video id"):
        with RGBWriter(tmp_path / "rgb2.h5") as w:
            w.add_video("a/b", [_jpeg(1)], fps=1.0)
    assert jpeg_size(_jpeg(0, h=37, w=53), "x") == (37, 53)


def test_authors_epic_layout_reads_segments(tmp_path):
    path = tmp_path / "epic.h5"
    # /<video>/<narration_id>: element i is frame start_frame + i; fixed-length bytes as np.asarray(bytes) gives.
    frames = [_jpeg(10 * i) for i in range(5)]
    flow = [_jpeg(v, grey=True) for v in (100, 200, 110, 210)]  # u0, v0, u1, v1
    with h5py.File(path, "w") as f:
        f.create_dataset("P01_11/P01_11_0", data=np.array(frames))
    with h5py.File(tmp_path / "epic_flow.h5", "w") as f:
        f.create_dataset("P01_11/P01_11_0", data=np.array(flow))
    s = open_store("rgb", path, segment_starts={"P01_11_0": 11})
    assert s.layout == "epic" and s.video_ids() == ["P01_11"]
    assert s.first_frame("P01_11", "P01_11_0") == 11 and s.num_frames("P01_11", "P01_11_0") == 5
    got = s.read_frames("P01_11", [13, 11], segment_id="P01_11_0")
    assert [_decode_mean(b) for b in got] == pytest.approx([20, 0], abs=1)
    assert s.read_frames("P01_11", [12], segment_id="P01_11_0", segment_start=12)[0] == got[1]
    with pytest.raises(KeyError, match="segment id"):
        s.read_frames("P01_11", [11])
    with pytest.raises(KeyError, match="frame 16"):
        s.read_frames("P01_11", [16], segment_id="P01_11_0")
    fs = FlowStore(tmp_path / "epic_flow.h5", segment_starts={"P01_11_0": 11})
    assert fs.first_frame("P01_11", "P01_11_0") == 6 and fs.num_frames("P01_11", "P01_11_0") == 2
    u, v = fs.read_frames("P01_11", [7, 6], segment_id="P01_11_0")
    assert [_decode_mean(b) for b in u + v] == pytest.approx([110, 100, 210, 200], abs=1)


def test_authors_ssv2_layout_and_audio(tmp_path):
    frames = [_jpeg(10 * i) for i in range(4)]
    with h5py.File(tmp_path / "ssv2.h5", "w") as f:
        ds = f.create_dataset("74225", (4,), dtype=h5py.vlen_dtype(np.uint8))
        for i, b in enumerate(frames):
            ds[i] = np.frombuffer(b, np.uint8)
    s = RGBStore(tmp_path / "ssv2.h5")
    assert s.layout == "ssv2" and (s.first_frame("74225"), s.num_frames("74225"), s.fps("74225")) == (1, 4, 0.0)
    assert s.read_frames("74225", [4, 1]) == [frames[3], frames[0]]
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("P01_01", data=np.arange(10, dtype=np.float32))
    a = AudioStore(tmp_path / "a.h5")
    assert a.sample_rate("P01_01") == 24000 and a.read("P01_01", 8, 12).tolist() == [8, 9, 0, 0]


def _read_first(args):
    store, vid = args
    return store.read_frames(vid, [1])[0]


def test_readers_pickle_and_work_in_dataloader_workers(tmp_path):
    path = tmp_path / "rgb.h5"
    _rgb_store(path, {f"v{i}": 2 for i in range(4)})
    s = RGBStore(path)
    s.video_ids()  # open in the parent first: workers must reopen, not share the handle
    clone = pickle.loads(pickle.dumps(s))
    assert clone.read_frames("v1", [2]) == s.read_frames("v1", [2])

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.tensor(_decode_mean(s.read_frames(f"v{i}", [2])[0]))

    loader = torch.utils.data.DataLoader(DS(), batch_size=1, num_workers=2)
    got = sorted(float(x) for x in loader)
    assert got == pytest.approx([10.0] * 4, abs=1)


def test_video_attributes_are_read_once_per_handle_and_refreshed_on_reopen(tmp_path):
    path = tmp_path / "rgb.h5"
    _rgb_store(path, {"P01_01": 3}, first=1, fps=50.0)
    s = RGBStore(path)
    assert (s.fps("P01_01"), s.first_frame("P01_01")) == (50.0, 1)
    assert s.attrs("P01_01") is s.attrs("P01_01")  # cached: one h5py attribute read per video
    s.close()
    with h5py.File(path, "r+") as f:  # the file changes while the reader is closed
        f["P01_01"].attrs["fps"] = 25.0
    assert s.fps("P01_01") == 25.0  # reopening drops the cached attributes
    s2 = pickle.loads(pickle.dumps(s))  # a worker's copy starts without the parent's cache
    assert s2._attrs == {} and s2.fps("P01_01") == 25.0
