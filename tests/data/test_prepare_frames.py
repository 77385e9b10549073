"""`prepare frames` / `prepare flow-frames`: byte-exact packing, numbering, resume, atomicity, bad input."""
from __future__ import annotations

import cv2
import h5py
import numpy as np
import pytest

from egodistill import cli
from egodistill.data.prepare.frames import list_frames, prepare_flow_frames, prepare_frames, read_video_info
from egodistill.data.stores import FlowStore, RGBStore, tmp_path_of


def _jpeg(value: int, h: int = 8, w: int = 12, grey: bool = False) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((h, w) if grey else (h, w, 3), value, np.uint8))
    assert ok
    return buf.tobytes()


def _folder(root, vid: str, numbers, name: str = "frame_{:010d}.jpg", grey: bool = False) -> dict[int, bytes]:
    d = root / vid
    d.mkdir(parents=True)
    blobs = {}
    for n in numbers:
        blobs[n] = _jpeg(min(255, 10 * n), grey=grey)
        (d / name.format(n)).write_bytes(blobs[n])
    return blobs


def test_frames_are_packed_byte_exact_in_numeric_order(tmp_path):
    src = tmp_path / "frames"
    a = _folder(src, "P01_01", range(1, 13), name="img_{}.jpg")  # unpadded: img_2 before img_10
    b = _folder(src, "P01_02", range(1, 4))
    out = tmp_path / "rgb.h5"
    s = prepare_frames(src, out, fps={"P01_01": 59.94, "P01_02": 50.0}, show_progress=False)
    assert (s.videos, s.skipped, s.frames) == (2, 0, 15)
    assert s.bytes == sum(map(len, a.values())) + sum(map(len, b.values()))
    assert s.line().startswith("prepare frames: 2 videos (0 skipped), 15 frames,")
    store = RGBStore(out)
    assert store.video_ids() == ["P01_01", "P01_02"]
    assert (store.first_frame("P01_01"), store.num_frames("P01_01"), store.fps("P01_01")) == (1, 12, 59.94)
    assert store.frame_size("P01_01") == (8, 12) and store.fps("P01_02") == 50.0
    assert store.read_frames("P01_01", list(range(1, 13))) == [a[n] for n in range(1, 13)]
    assert not tmp_path_of(out).exists()


def test_rerun_skips_complete_videos_and_adds_new_ones(tmp_path):
    src = tmp_path / "frames"
    _folder(src, "a", range(1, 4))
    out = tmp_path / "rgb.h5"
    prepare_frames(src, out, show_progress=False)
    again = prepare_frames(src, out, show_progress=False)
    assert (again.videos, again.skipped, again.frames) == (0, 1, 0)
    _folder(src, "b", range(5, 7))  # numbering kept: first frame 5
    more = prepare_frames(src, out, show_progress=False)
    assert (more.videos, more.skipped) == (1, 1)
    store = RGBStore(out)
    assert store.video_ids() == ["a", "b"] and store.first_frame("b") == 5 and store.num_frames("b") == 2


def test_workers_give_the_same_store(tmp_path):
    src = tmp_path / "frames"
    for v in range(3):
        _folder(src, f"v{v}", range(1, 5 + v))
    prepare_frames(src, tmp_path / "one.h5", show_progress=False)
    prepare_frames(src, tmp_path / "two.h5", workers=2, show_progress=False)
    one, two = RGBStore(tmp_path / "one.h5"), RGBStore(tmp_path / "two.h5")
    assert one.video_ids() == two.video_ids()
    for v in one.video_ids():
        ns = list(range(1, one.num_frames(v) + 1))
        assert one.read_frames(v, ns) == two.read_frames(v, ns)


def test_gap_is_an_error_naming_video_and_frames_unless_filled(tmp_path):
    src = tmp_path / "frames"
    blobs = _folder(src, "P01_01", [1, 2, 5, 6])
    with pytest.raises(ValueError, match=r"video P01_01: missing frame file\(s\) 3-4"):
        prepare_frames(src, tmp_path / "rgb.h5", show_progress=False)
    s = prepare_frames(src, tmp_path / "rgb.h5", on_gap="fill", show_progress=False)
    assert s.warnings == ["video P01_01: filled missing frame(s) 3-4"]
    got = RGBStore(tmp_path / "rgb.h5").read_frames("P01_01", [1, 2, 3, 4, 5, 6])
    assert got == [blobs[1], blobs[2], blobs[2], blobs[2], blobs[5], blobs[6]]


def test_non_numeric_and_non_jpeg_and_empty_folders_are_named(tmp_path):
    d = tmp_path / "x" / "v1"
    d.mkdir(parents=True)
    (d / "cover.jpg").write_bytes(_jpeg(1))
    with pytest.raises(ValueError, match=r"cover\.jpg: no frame number"):
        list_frames(d)
    (d / "cover.jpg").unlink()
    (d / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match=r"notes\.txt: not a frame file"):
        list_frames(d)
    (d / "notes.txt").unlink()
    with pytest.raises(ValueError, match=r"v1: no frame files"):
        prepare_frames(tmp_path / "x", tmp_path / "rgb.h5", show_progress=False)
    (d / "frame_1.jpg").write_bytes(_jpeg(1))
    (d / "frame_01.jpg").write_bytes(_jpeg(1))
    with pytest.raises(ValueError, match=r"frame 1 appears twice"):
        list_frames(d)


def test_corrupt_jpeg_fails_and_leaves_previous_output_intact(tmp_path):
    src = tmp_path / "frames"
    _folder(src, "a", range(1, 4))
    out = tmp_path / "rgb.h5"
    prepare_frames(src, out, show_progress=False)
    before = out.read_bytes()
    d = src / "b"
    d.mkdir()
    (d / "frame_0000000001.jpg").write_bytes(_jpeg(5))
    (d / "frame_0000000002.jpg").write_bytes(_jpeg(5)[:30])  # truncated
    with pytest.raises(ValueError, match=r"frame_0000000002\.jpg \(video b, frame 2\): truncated JPEG"):
        prepare_frames(src, out, show_progress=False)
    assert out.read_bytes() == before and RGBStore(out).video_ids() == ["a"]
    # Markers intact but the data garbage: only --verify (full decode) catches it.
    bad = bytearray(_jpeg(5))
    bad[2:-2] = bytes(len(bad) - 4)
    (d / "frame_0000000002.jpg").write_bytes(bytes(bad))
    with pytest.raises(ValueError, match=r"video b, frame 2\): corrupt JPEG"):
        prepare_frames(src, out, verify=True, show_progress=False)
    assert out.read_bytes() == before


def test_video_info_csv_gives_per_video_fps(tmp_path):
    info = tmp_path / "info.csv"
    info.write_text("video_id,duration,fps,resolution\nP01_01,1652.15,59.9400599400599,1920x1080\nP02_01,10,50.0,1280x720\n")
    assert read_video_info(info) == {"P01_01": 59.9400599400599, "P02_01": 50.0}
    info.write_text("video_id,duration,fps,resolution\nP01_01,1,fast,1x1\n")
    with pytest.raises(ValueError, match=r"line 2: column fps"):
        read_video_info(info)
    src = tmp_path / "frames"
    _folder(src, "P09_01", [1])
    with pytest.raises(KeyError, match="P09_01"):
        prepare_frames(src, tmp_path / "rgb.h5", fps={"P01_01": 50.0}, show_progress=False)


def test_epic_flow_folders(tmp_path):
    src = tmp_path / "flow"
    u = _folder(src / "u", "P01_01", range(1, 5), grey=True)
    v = _folder(src / "v", "P01_01", range(1, 5), grey=True)
    out = tmp_path / "flow.h5"
    s = prepare_flow_frames(src, out, fps=60.0, show_progress=False)
    assert (s.videos, s.frames) == (1, 4)
    store = FlowStore(out)
    assert (store.num_frames("P01_01"), store.first_frame("P01_01"), store.stride("P01_01"),
            store.bound("P01_01"), store.fps("P01_01")) == (4, 1, 2, 20.0, 30.0)
    us, vs = store.read_frames("P01_01", [3, 1])
    assert us == [u[3], u[1]] and vs == [v[3], v[1]]
    _folder(src / "u", "P01_02", range(1, 4), grey=True)
    _folder(src / "v", "P01_02", range(1, 3), grey=True)
    with pytest.raises(ValueError, match=r"video P01_02: u has flow frames 1\.\.3 but v has 1\.\.2"):
        prepare_flow_frames(src, out, show_progress=False)
    with h5py.File(out) as f:
        assert sorted(f) == ["P01_01"]


def test_cli_prepare_frames_prints_summary_and_errors_in_one_line(tmp_path, capsys):
    src = tmp_path / "frames"
    _folder(src, "P01_01", range(1, 4))
    assert cli.main(["prepare", "frames", str(src), str(tmp_path / "rgb.h5"), "--fps", "50", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "prepare frames: 1 videos (0 skipped), 3 frames" in out
    assert RGBStore(tmp_path / "rgb.h5").fps("P01_01") == 50.0
    assert cli.main(["prepare", "frames", str(tmp_path / "none"), str(tmp_path / "x.h5"), "--quiet"]) == 1
    assert "frames folder not found" in capsys.readouterr().err
    for tool in ("frames", "flow-frames", "video", "audio", "flow", "layout"):
        with pytest.raises(SystemExit) as e:
            cli.main(["prepare", tool, "--help"])
        assert e.value.code == 0
        assert "usage: egodistill prepare " + tool in capsys.readouterr().out
