"""`prepare frames` / `prepare flow-frames` reading EPIC's `<video>.tar` archives directly: the same
store, byte for byte, as packing the unpacked folders; workers, resume, bad members; --dry-run."""
from __future__ import annotations

import io
import shutil
import tarfile

import cv2
import numpy as np
import pytest

from egodistill import cli
from egodistill.data.prepare.common import DryRun
from egodistill.data.prepare.frames import prepare_flow_frames, prepare_frames
from egodistill.data.stores import FlowStore, RGBStore


def _jpeg(rng: np.random.Generator, grey: bool = False) -> bytes:
    img = rng.integers(0, 256, (16, 20) if grey else (16, 20, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


def _epic_set(root, videos: dict[str, int], seed: int = 0):
    """Write EPIC-style frame folders (root/folders/<vid>/) and the same frames as archives
    (root/tars/<vid>.tar, members ./frame_0000000001.jpg as EPIC ships them)."""
    rng = np.random.default_rng(seed)
    folders, tars = root / "folders", root / "tars"
    tars.mkdir(parents=True)
    for vid, n in videos.items():
        d = folders / vid
        d.mkdir(parents=True)
        for i in range(1, n + 1):
            (d / f"frame_{i:010d}.jpg").write_bytes(_jpeg(rng))
        with tarfile.open(tars / f"{vid}.tar", "w") as tar:
            tar.add(d, arcname=".")
    return folders, tars


def _frames(path, store_cls=RGBStore):
    store = store_cls(path)
    return {v: store.read_frames(v, list(range(store.first_frame(v), store.first_frame(v) + store.num_frames(v))))
            for v in store.video_ids()}


def test_archives_pack_byte_identical_to_the_unpacked_folders_with_workers_and_resume(tmp_path):
    folders, tars = _epic_set(tmp_path, {"P01_01": 9, "P01_02": 5, "P02_01": 7})
    from_folders = tmp_path / "folders.h5"
    prepare_frames(folders, from_folders, show_progress=False)
    out = tmp_path / "rgb.h5"
    first = prepare_frames(tars, out, video_ids=["P01_02"], show_progress=False)  # an interrupted run
    assert (first.videos, first.frames) == (1, 5)
    s = prepare_frames(tars, out, workers=2, show_progress=False)  # resumes: the two others
    assert (s.videos, s.skipped, s.frames) == (2, 1, 16)
    assert _frames(out) == _frames(from_folders)
    a, b = RGBStore(out), RGBStore(from_folders)
    assert all(a.frame_size(v) == b.frame_size(v) and a.first_frame(v) == 1 for v in a.video_ids())


def _tar_of(path, members: dict[str, bytes], **tar_kwargs) -> None:
    with tarfile.open(path, **{"mode": "w", **tar_kwargs}) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("kind, tar_kwargs", [
    ("gnu", dict(format=tarfile.GNU_FORMAT)),  # as GNU tar writes EPIC's: the plain reader
    ("ustar", dict(format=tarfile.USTAR_FORMAT)),  # a long path in the ustar prefix field
    ("pax", dict(format=tarfile.PAX_FORMAT, pax_headers={"comment": "x"})),  # left to tarfile
    ("gz", dict(mode="w:gz")),  # compressed: left to tarfile
])
def test_every_tar_flavour_reads_the_same_frames(tmp_path, monkeypatch, kind, tar_kwargs):
    from egodistill.data.prepare import frames as frames_module
    from egodistill.data.prepare.frames import read_archive

    if kind in ("gnu", "ustar"):  # these must not need tarfile
        monkeypatch.setattr(frames_module, "_tarfile_members", lambda archive: pytest.fail("read through tarfile"))

    rng = np.random.default_rng(1)
    frames = {i: _jpeg(rng) for i in range(1, 6)}
    deep = "./" + "d" * 60 + "/" + "e" * 60  # 125 characters: over the 100 of a plain name field
    members = {f"./frame_{i:010d}.jpg": b for i, b in frames.items()}
    path = tmp_path / f"{kind}.tar"
    _tar_of(path, members, **tar_kwargs)
    listed = read_archive(path)[""]
    assert [(n, read()) for n, _, read in listed] == sorted(frames.items())
    assert listed[0][1] == f"{path}: member ./frame_0000000001.jpg"
    if kind in ("gnu", "ustar"):  # a long member name (ustar prefix; GNU long name, through tarfile) is read whole
        monkeypatch.undo()
        _tar_of(path, {f"{deep}/u/frame_0000000001.jpg": b"x"}, **tar_kwargs)
        with pytest.raises(ValueError, match=f"member {deep}/u/frame_0000000001.jpg: not a frame"):
            read_archive(path)


def test_a_damaged_or_truncated_archive_names_the_archive(tmp_path):
    from egodistill.data.prepare.frames import read_archive

    rng = np.random.default_rng(2)
    path = tmp_path / "P01_01.tar"
    _tar_of(path, {f"./frame_{i:010d}.jpg": _jpeg(rng) for i in range(1, 4)}, format=tarfile.GNU_FORMAT)
    good = path.read_bytes()
    path.write_bytes(good[:512 + 100])  # the first member's data cut short
    with pytest.raises(ValueError, match=f"{path}: not a readable tar archive .*truncated"):
        read_archive(path)
    damaged = bytearray(good)
    damaged[10] ^= 0xFF  # a byte of the first header's name: its checksum no longer matches
    path.write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match=f"{path}: not a readable tar archive .*checksum"):
        read_archive(path)


def test_flow_archives_with_u_and_v_members(tmp_path):
    rng = np.random.default_rng(1)
    folders, tars = tmp_path / "flow", tmp_path / "flow_tars"
    tars.mkdir()
    for vid, n in {"P01_01": 4, "P01_02": 3}.items():
        for c in ("u", "v"):
            d = folders / c / vid
            d.mkdir(parents=True)
            for i in range(1, n + 1):
                (d / f"frame_{i:010d}.jpg").write_bytes(_jpeg(rng, grey=True))
        with tarfile.open(tars / f"{vid}.tar", "w") as tar:  # EPIC: ./u/frame_*.jpg, ./v/frame_*.jpg
            for c in ("u", "v"):
                tar.add(folders / c / vid, arcname=f"./{c}")
    prepare_flow_frames(folders, tmp_path / "a.h5", show_progress=False)
    s = prepare_flow_frames(tars, tmp_path / "b.h5", workers=2, show_progress=False)
    assert (s.videos, s.frames) == (2, 7)
    assert _frames(tmp_path / "b.h5", FlowStore) == _frames(tmp_path / "a.h5", FlowStore)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_bad_members_name_the_archive_and_the_member(tmp_path, capsys):
    _, tars = _epic_set(tmp_path, {"P01_01": 3})
    bad = tars / "P01_09.tar"
    with tarfile.open(bad, "w") as tar:
        _add(tar, "./frame_0000000001.jpg", _jpeg(np.random.default_rng(0)))
        _add(tar, "./notes.txt", b"hello")
    with pytest.raises(ValueError, match=r"P01_09\.tar: member \./notes\.txt: not a frame file"):
        prepare_frames(tars, tmp_path / "x.h5", show_progress=False)
    with tarfile.open(bad, "w") as tar:
        _add(tar, "./frame_0000000001.jpg", b"GIF89a not a jpeg at all")
    assert cli.main(["prepare", "frames", str(tars), str(tmp_path / "x.h5"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "P01_09.tar: member ./frame_0000000001.jpg" in err and "not a JPEG" in err and "Traceback" not in err
    assert not (tmp_path / "x.h5").exists()
    bad.write_bytes(b"\0" * 10 + b"broken")
    with pytest.raises(ValueError, match="P01_09.tar: not a readable tar archive"):
        prepare_frames(tars, tmp_path / "x.h5", show_progress=False)
    shutil.copytree(tmp_path / "folders" / "P01_01", tars / "P01_01")  # a video as a folder and an archive
    bad.unlink()
    with pytest.raises(ValueError, match="video P01_01 is there twice"):
        prepare_frames(tars, tmp_path / "x.h5", show_progress=False)


def test_dry_run_counts_estimates_and_writes_nothing(tmp_path, capsys):
    folders, tars = _epic_set(tmp_path, {"P01_01": 6, "P01_02": 4})
    out = tmp_path / "out" / "rgb.h5"
    for src in (folders, tars):
        r = prepare_frames(src, out, dry_run=True, show_progress=False)
        assert isinstance(r, DryRun) and (r.videos, r.skipped, r.frames) == (2, 0, 10)
        assert r.bytes == sum(p.stat().st_size for p in folders.rglob("*.jpg")) and r.free > 0 and r.ok
        assert "P01_02" in r.basis  # timed on the shortest video
    assert not (tmp_path / "out").exists()
    prepare_frames(tars, out, video_ids=["P01_01"], show_progress=False)
    assert cli.main(["prepare", "frames", str(tars), str(out), "--dry-run"]) == 0
    line = capsys.readouterr().out
    assert "1 videos to write (1 already complete), 4 frames" in line and "nothing written" in line
    assert RGBStore(out).video_ids() == ["P01_01"]


def test_every_prepare_tool_has_dry_run():
    import argparse

    from egodistill.commands import prepare

    parser = argparse.ArgumentParser()
    prepare.register(parser.add_subparsers())
    tools = parser._subparsers._group_actions[0].choices["prepare"]._subparsers._group_actions[0].choices
    for tool in ("frames", "flow-frames", "video", "audio", "flow", "layout"):
        assert "--dry-run" in tools[tool].format_help(), tool


def test_dry_run_of_video_and_audio_write_nothing(tmp_path):
    import importlib

    from egodistill.data.prepare.video import prepare_audio, prepare_video

    make_video = importlib.import_module("test_prepare_video")._make_video  # tests/data, on the test path
    make_video(tmp_path / "P01_01.mp4", n=12)
    make_video(tmp_path / "P01_02.mp4", n=12)
    paths = [tmp_path / "P01_01.mp4", tmp_path / "P01_02.mp4"]
    r = prepare_video(paths, tmp_path / "rgb.h5", tmp_path / "audio.h5", dry_run=True, show_progress=False)
    assert (r.videos, r.frames) == (2, 24) and r.samples > 0 and r.bytes > 0 and "video P01_0" in r.basis
    a = prepare_audio(paths, tmp_path / "audio.h5", sample_rate=8000, dry_run=True, show_progress=False)
    assert a.videos == 2 and a.samples == pytest.approx(2.4 * 8000, rel=0.05) and a.bytes > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["P01_01.mp4", "P01_02.mp4"]


def test_dry_run_of_flow_and_layout_write_nothing(synth_root, tmp_path):
    from egodistill.data.prepare.flow import prepare_flow
    from egodistill.data.prepare.layout import prepare_layout

    r = prepare_flow(synth_root / "rgb.h5", tmp_path / "flow.h5", dry_run=True, show_progress=False)
    assert r.videos == len(RGBStore(synth_root / "rgb.h5").video_ids()) and r.frames > 0 and r.bytes > 0
    assert r.seconds > 0 and "video" in r.basis
    boxes = synth_root.parent / "boxes.json"  # the synthetic dataset's detections are packed already: rebuild one
    import json

    boxes.write_text(json.dumps({"P01_01": {"num_frames": 3, "frames": {"1": {"hands": [], "objects": []}}}}))
    lay = prepare_layout(boxes, tmp_path / "layout.h5", format="hand_object", dry_run=True, show_progress=False)
    assert (lay.videos, lay.frames) == (1, 3) and lay.bytes > 0
    assert list(tmp_path.iterdir()) == []


def test_layout_dry_run_needs_the_shared_overhead(synth_root, tmp_path, monkeypatch):
    """The layout dry run's space estimate is every tool's (prepare/common.py): the payload times
    HDF5_OVERHEAD, plus the store a rerun first copies to <out>.tmp (not when a .tmp is there)."""
    import json

    from egodistill.data.prepare import common
    from egodistill.data.prepare.layout import prepare_layout

    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"P01_01": {"num_frames": 3, "frames": {"1": {"hands": [], "objects": []}}}}))
    out = tmp_path / "out" / "layout.h5"
    monkeypatch.setattr(common, "HDF5_OVERHEAD", 2.0)
    lay = prepare_layout(boxes, out, format="hand_object", dry_run=True, show_progress=False)
    assert lay.need == pytest.approx(lay.bytes * 2.0)
    out.parent.mkdir()
    out.write_bytes(b"x" * 1000)  # an existing store is copied before a resume
    lay = prepare_layout(boxes, out, format="hand_object", dry_run=True, show_progress=False)
    assert lay.need == pytest.approx(lay.bytes * 2.0 + 1000)
    (tmp_path / "out" / "layout.h5.tmp").write_bytes(b"x" * 10)  # an interrupted run is resumed in place
    lay = prepare_layout(boxes, out, format="hand_object", dry_run=True, show_progress=False)
    assert lay.need == pytest.approx(lay.bytes * 2.0)


def test_verify_reports_missing_videos_short_videos_and_bad_jpegs(synth_root, tmp_path, capsys):
    ann = synth_root / "annotations"
    store = synth_root / "rgb.h5"
    assert cli.main(["prepare", "verify", str(store), "--annotations", str(ann / "EPIC_100_train.csv"),
                     str(ann / "EPIC_100_validation.csv")]) == 0
    assert ": OK" in capsys.readouterr().out
    for name in ("flow.h5", "audio.h5", "layout.h5"):
        assert cli.main(["prepare", "verify", str(synth_root / name), "--annotations",
                         str(ann / "EPIC_100_train.csv")]) == 0, capsys.readouterr().out
    capsys.readouterr()
    # a CSV naming a missing video and a segment past a video's end; a store with a broken JPEG
    csv_path = tmp_path / "ann.csv"
    n = RGBStore(store).num_frames("P01_01")
    csv_path.write_text(f"narration_id,video_id,start_frame,stop_frame\nP09_01_0,P09_01,1,5\n"
                        f"P01_01_9,P01_01,{n - 2},{n + 10}\n")
    folders, _ = _epic_set(tmp_path, {"P01_01": 4})
    (folders / "P01_01" / "frame_0000000003.jpg").write_bytes(b"\xff\xd8" + b"\0" * 50 + b"\xff\xd9")
    bad_store = tmp_path / "bad.h5"
    prepare_frames(folders, bad_store, show_progress=False)
    assert cli.main(["prepare", "verify", str(store), "--annotations", str(csv_path)]) == 1
    out = capsys.readouterr().out
    assert "2 problem(s)" in out and "line 2 (P09_01_0): video P09_01 is not in the store" in out
    assert f"video P01_01 holds frames 1..{n}, the segment needs {n - 2}..{n + 10}" in out
    assert cli.main(["prepare", "verify", str(bad_store), "--sample", "4"]) == 1
    assert "video P01_01: frame 3 does not decode" in capsys.readouterr().out
    assert cli.main(["prepare", "verify", str(tmp_path / "none.h5")]) == 1
    assert "store not found" in capsys.readouterr().err
