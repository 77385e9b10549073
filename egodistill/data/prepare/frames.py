"""`prepare frames` / `prepare flow-frames`: EPIC-style JPEG folders into rgb.h5 / flow.h5.

RGB: `<frames_dir>/<video_id>/frame_0000000001.jpg ...` (any name whose last digit run is the
frame number: `00001.jpg`, `img_12.jpeg`), frames numbered as in the files (EPIC: 1-based).
Flow: `<flow_dir>/u/<video_id>/frame_*.jpg` and `<flow_dir>/v/<video_id>/...` (EPIC's release;
`<flow_dir>/<video_id>/{u,v}/` is accepted too), one grey JPEG per flow frame.

The JPEG bytes are stored as they are (no re-encoding). Frames are checked for JPEG start/end
markers; `verify=True` also decodes every frame. A gap in the numbering is an error naming the
video and the missing frames, unless `on_gap="fill"`, which repeats the previous frame (so frame
numbers still match the annotations) and reports each gap in the summary.
"""
from __future__ import annotations

import csv
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from egodistill.data.prepare.common import (
    PrepareSummary, Timer, check_workers, imap_workers, natural_key, progress,
)
from egodistill.data.stores import FlowWriter, RGBWriter, check_jpeg, check_video_id, jpeg_size

JPEG_SUFFIXES = (".jpg", ".jpeg")
_NUMBER = re.compile(r"(\d+)(?!.*\d)")  # the last run of digits in the stem


def list_frames(video_dir: Path) -> list[tuple[int, Path]]:
    """Return `(frame number, path)` of a folder's JPEG frames in numeric order.

    Hidden files are ignored. Raises ValueError naming the file for a non-JPEG file, a name
    without a frame number, or two files with the same number; and naming the folder if empty.
    """
    frames: dict[int, Path] = {}
    for entry in os.scandir(video_dir):
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        if not entry.is_file() or path.suffix.lower() not in JPEG_SUFFIXES:
            raise ValueError(f"{path}: not a frame file (expected JPEG files named like frame_0000000001.jpg)")
        m = _NUMBER.search(path.stem)
        if m is None:
            raise ValueError(f"{path}: no frame number in the file name (expected e.g. frame_0000000001.jpg)")
        number = int(m.group(1))
        if number in frames:
            raise ValueError(f"{path}: frame {number} appears twice (also {frames[number].name})")
        frames[number] = path
    if not frames:
        raise ValueError(f"{video_dir}: no frame files (expected JPEG files named like frame_0000000001.jpg)")
    return sorted(frames.items())


def _gaps(numbers: Sequence[int]) -> list[tuple[int, int]]:
    """Return the missing runs `(first, last)` between consecutive frame numbers."""
    return [(a + 1, b - 1) for a, b in zip(numbers, numbers[1:]) if b > a + 1]


def _describe_gaps(gaps: list[tuple[int, int]]) -> str:
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in gaps[:5])
    return text + (f" and {len(gaps) - 5} more gap(s)" if len(gaps) > 5 else "")


def read_frame_folder(video_dir: Path, video_id: str, *, on_gap: str = "error", verify: bool = False,
                      what: str = "frame") -> tuple[list[bytes], int, tuple[int, int], list[tuple[int, int]]]:
    """Return (JPEG bytes for frames first..last, first frame number, (height, width), gaps).

    Gaps are filled with the previous frame when `on_gap == "fill"`; otherwise they raise.
    """
    listed = list_frames(video_dir)
    numbers = [n for n, _ in listed]
    gaps = _gaps(numbers)
    if gaps and on_gap != "fill":
        raise ValueError(f"{video_dir}: video {video_id}: missing {what} file(s) {_describe_gaps(gaps)} "
                         f"(frames {numbers[0]}..{numbers[-1]}; use --on-gap fill to repeat the previous frame)")
    blobs: list[bytes] = []
    size: tuple[int, int] | None = None
    prev = numbers[0] - 1
    for number, path in listed:
        blob = path.read_bytes()
        check_jpeg(blob, f"{path} (video {video_id}, {what} {number})")
        if size is None or verify:
            img = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_UNCHANGED)
            if img is None:
                raise ValueError(f"{path} (video {video_id}, {what} {number}): corrupt JPEG, cannot be decoded")
            hw = (int(img.shape[0]), int(img.shape[1]))
            if size is not None and hw != size:
                raise ValueError(f"{path} (video {video_id}, {what} {number}): size {hw[1]}x{hw[0]} differs from "
                                 f"the video's first frame ({size[1]}x{size[0]})")
            size = hw
        blobs.extend([blobs[-1]] * (number - prev - 1) if blobs else [])
        blobs.append(blob)
        prev = number
    assert size is not None
    return blobs, numbers[0], size, gaps


def read_video_info(path: str | os.PathLike) -> dict[str, float]:
    """Return {video_id: fps} from EPIC's `EPIC_100_video_info.csv` (video_id,duration,fps,resolution)."""
    out: dict[str, float] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "video_id" not in reader.fieldnames or "fps" not in reader.fieldnames:
            raise ValueError(f"{path}: expected the columns video_id and fps (EPIC_100_video_info.csv), "
                             f"got {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            try:
                out[row["video_id"]] = float(row["fps"])
            except (TypeError, ValueError):
                raise ValueError(f"{path}: line {line}: column fps: expected a number, got {row['fps']!r}") from None
    return out


def _fps_of(fps: float | Mapping[str, float], video_id: str) -> float:
    if isinstance(fps, Mapping):
        if video_id not in fps:
            raise KeyError(f"video {video_id}: no frame rate given (not in the video info / fps mapping)")
        return float(fps[video_id])
    return float(fps)


def _video_dirs(root: Path, video_ids: Sequence[str] | None) -> list[tuple[str, Path]]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"frames folder not found: {root}")
    found = {p.name: p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if video_ids is not None:
        missing = [v for v in video_ids if v not in found]
        if missing:
            raise FileNotFoundError(f"{root}: no frame folder for video(s) {', '.join(missing[:5])}")
        found = {v: found[v] for v in video_ids}
    if not found:
        raise ValueError(f"{root}: no video folders (expected <video_id>/frame_0000000001.jpg ...)")
    return [(v, found[v]) for v in sorted(found, key=natural_key)]


def _rgb_job(job: tuple[str, Path, str, bool]):
    vid, vdir, on_gap, verify = job
    return (vid,) + read_frame_folder(vdir, vid, on_gap=on_gap, verify=verify)


def prepare_frames(frames_dir: str | os.PathLike, out_path: str | os.PathLike, *, workers: int = 1,
                   video_ids: Sequence[str] | None = None, fps: float | Mapping[str, float] = 60.0,
                   on_gap: str = "error", verify: bool = False, resume: bool = True,
                   show_progress: bool = True) -> PrepareSummary:
    """Pack `<frames_dir>/<video_id>/*.jpg` into rgb.h5 at `out_path`; return the summary.

    `fps`: one rate for all videos or {video_id: fps} (e.g. `read_video_info(...)`). A rerun skips
    videos already complete in `out_path`; the output is replaced only when every video is done.
    """
    if on_gap not in ("error", "fill"):
        raise ValueError(f"on_gap must be 'error' or 'fill', got {on_gap!r}")
    workers = check_workers(workers)
    summary = PrepareSummary("prepare frames", out=str(out_path))
    with Timer() as t:
        dirs = _video_dirs(Path(frames_dir), video_ids)
        for vid, _ in dirs:
            check_video_id(vid)
            _fps_of(fps, vid)
        with RGBWriter(out_path, resume=resume) as w:
            todo = [(vid, d, on_gap, verify) for vid, d in dirs if not w.has_video(vid)]
            summary.skipped = len(dirs) - len(todo)
            bar = progress(len(todo), "prepare frames", show_progress)
            for vid, blobs, first, (h, wd), gaps in imap_workers(_rgb_job, todo, workers):
                w.add_video(vid, blobs, fps=_fps_of(fps, vid), first_frame=first, height=h, width=wd)
                if gaps:
                    summary.warnings.append(f"video {vid}: filled missing frame(s) {_describe_gaps(gaps)}")
                summary.videos += 1
                summary.frames += len(blobs)
                summary.bytes += sum(len(b) for b in blobs)
                bar.update(1)
            bar.close()
    summary.seconds = t.seconds
    return summary


# --------------------------------------------------------------------------------------------
# EPIC flow folders
# --------------------------------------------------------------------------------------------


def _flow_dirs(root: Path, video_ids: Sequence[str] | None) -> list[tuple[str, Path, Path]]:
    """Return (video id, u folder, v folder) for `root/{u,v}/<video>` or `root/<video>/{u,v}`."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"flow folder not found: {root}")
    pairs: dict[str, tuple[Path, Path]] = {}
    if (root / "u").is_dir() or (root / "v").is_dir():
        for c in ("u", "v"):
            if not (root / c).is_dir():
                raise FileNotFoundError(f"{root}: has no {c}/ folder (expected u/<video_id>/ and v/<video_id>/)")
        us = {p.name for p in (root / "u").iterdir() if p.is_dir() and not p.name.startswith(".")}
        vs = {p.name for p in (root / "v").iterdir() if p.is_dir() and not p.name.startswith(".")}
        if us != vs:
            odd = sorted(us ^ vs)[0]
            where = "u" if odd in us else "v"
            raise ValueError(f"{root}: video {odd} has flow frames in {where}/ only (expected both u/{odd} and v/{odd})")
        pairs = {vid: (root / "u" / vid, root / "v" / vid) for vid in us}
    else:
        for p in root.iterdir():
            if p.is_dir() and not p.name.startswith("."):
                if not ((p / "u").is_dir() and (p / "v").is_dir()):
                    raise ValueError(f"{p}: expected u/ and v/ folders of flow frames")
                pairs[p.name] = (p / "u", p / "v")
    if video_ids is not None:
        missing = [v for v in video_ids if v not in pairs]
        if missing:
            raise FileNotFoundError(f"{root}: no flow folders for video(s) {', '.join(missing[:5])}")
        pairs = {v: pairs[v] for v in video_ids}
    if not pairs:
        raise ValueError(f"{root}: no flow folders (expected u/<video_id>/frame_*.jpg and v/<video_id>/...)")
    return [(v, *pairs[v]) for v in sorted(pairs, key=natural_key)]


def _flow_job(job: tuple[str, Path, Path, str, bool]):
    vid, udir, vdir, on_gap, verify = job
    us, first_u, size, gaps = read_frame_folder(udir, vid, on_gap=on_gap, verify=verify, what="flow frame (u)")
    vs, first_v, size_v, _ = read_frame_folder(vdir, vid, on_gap=on_gap, verify=verify, what="flow frame (v)")
    if (first_u, len(us)) != (first_v, len(vs)):
        raise ValueError(f"video {vid}: u has flow frames {first_u}..{first_u + len(us) - 1} but v has "
                         f"{first_v}..{first_v + len(vs) - 1} ({udir}, {vdir})")
    if size != size_v:
        raise ValueError(f"video {vid}: u frames are {size[1]}x{size[0]} but v frames {size_v[1]}x{size_v[0]}")
    return vid, us, vs, first_u, size, gaps


def prepare_flow_frames(flow_dir: str | os.PathLike, out_path: str | os.PathLike, *, stride: int = 2,
                        bound: float = 20.0, workers: int = 1, video_ids: Sequence[str] | None = None,
                        fps: float | Mapping[str, float] = 60.0, on_gap: str = "error", verify: bool = False,
                        resume: bool = True, show_progress: bool = True) -> PrepareSummary:
    """Pack EPIC flow folders (`u/<video>/`, `v/<video>/`) into flow.h5 at `out_path`.

    `stride`: RGB frames per flow frame (EPIC: 2); `bound`: the flow the JPEGs were quantised
    with (EPIC: 20); `fps`: the RGB frame rate (the flow's is fps / stride). Flow frames keep
    their file numbers (EPIC: 1-based, flow frame k covers RGB frames 2k-1 and 2k).
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    workers = check_workers(workers)
    summary = PrepareSummary("prepare flow-frames", out=str(out_path))
    with Timer() as t:
        dirs = _flow_dirs(Path(flow_dir), video_ids)
        for vid, *_ in dirs:
            check_video_id(vid)
            _fps_of(fps, vid)
        with FlowWriter(out_path, resume=resume) as w:
            todo = [(vid, u, v, on_gap, verify) for vid, u, v in dirs if not w.has_video(vid)]
            summary.skipped = len(dirs) - len(todo)
            bar = progress(len(todo), "prepare flow-frames", show_progress)
            for vid, us, vs, first, (h, wd), gaps in imap_workers(_flow_job, todo, workers):
                w.add_video(vid, us, vs, fps=_fps_of(fps, vid) / stride, first_frame=first, stride=stride,
                            bound=bound, height=h, width=wd, source="flow frames")
                if gaps:
                    summary.warnings.append(f"video {vid}: filled missing flow frame(s) {_describe_gaps(gaps)}")
                summary.videos += 1
                summary.frames += len(us)
                summary.bytes += sum(len(b) for b in us) + sum(len(b) for b in vs)
                bar.update(1)
            bar.close()
    summary.seconds = t.seconds
    return summary


__all__ = ["list_frames", "read_frame_folder", "read_video_info", "prepare_frames", "prepare_flow_frames",
           "jpeg_size"]
