"""`prepare frames` / `prepare flow-frames`: EPIC-style JPEG folders into rgb.h5 / flow.h5.

RGB: `<frames_dir>/<video_id>/frame_0000000001.jpg ...` (any name whose last digit run is the
frame number: `00001.jpg`, `img_12.jpeg`), frames numbered as in the files (EPIC: 1-based).
Flow: `<flow_dir>/u/<video_id>/frame_*.jpg` and `<flow_dir>/v/<video_id>/...` (EPIC's release;
`<flow_dir>/<video_id>/{u,v}/` is accepted too), one grey JPEG per flow frame.
EPIC's archives are read directly, never unpacked to disk: `<frames_dir>/<video_id>.tar` with
members `./frame_0000000001.jpg ...`, `<flow_dir>/<video_id>.tar` with `./u/...` and `./v/...`
(a folder may mix archives and frame folders). Each archive is read in one sequential pass; the
frames it gives are the same bytes as those of the unpacked folder, so the stores are identical.

The JPEG bytes are stored as they are (no re-encoding). Frames are checked for JPEG start/end
markers; `verify=True` also decodes every frame. A gap in the numbering is an error naming the
video and the missing frames, unless `on_gap="fill"`, which repeats the previous frame (so frame
numbers still match the annotations) and reports each gap in the summary.
"""
from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Iterator, TypeVar

import cv2
import numpy as np

from egodistill.data.prepare.common import (
    DryRun, PrepareSummary, SpaceCheck, Timer, check_workers, complete_videos, estimate, imap_workers, natural_key,
    progress,
)
from egodistill.data.stores import FlowWriter, RGBWriter, check_jpeg, check_video_id, jpeg_size

T = TypeVar("T")
JPEG_SUFFIXES = (".jpg", ".jpeg")
_NUMBER = re.compile(r"(\d+)(?!.*\d)")  # the last run of digits in the stem


def frame_number(name: str, where: str) -> int:
    """Return the frame number of a frame file named `name` (the last run of digits of its
    stem); `where` names the file or archive member in the error for any other name."""
    stem, suffix = os.path.splitext(os.path.basename(name))  # not pathlib: called once per frame
    if suffix.lower() not in JPEG_SUFFIXES:
        raise ValueError(f"{where}: not a frame file (expected JPEG files named like frame_0000000001.jpg)")
    m = _NUMBER.search(stem)
    if m is None:
        raise ValueError(f"{where}: no frame number in the file name (expected e.g. frame_0000000001.jpg)")
    return int(m.group(1))


def _add_frame(frames: dict[int, tuple[str, T]], number: int, where: str, item: T) -> None:
    if number in frames:
        raise ValueError(f"{where}: frame {number} appears twice (also {Path(frames[number][0]).name})")
    frames[number] = (where, item)


def list_frames(video_dir: Path) -> list[tuple[int, Path]]:
    """Return `(frame number, path)` of a folder's JPEG frames in numeric order.

    Hidden files are ignored. Raises ValueError naming the file for a non-JPEG file, a name
    without a frame number, or two files with the same number; and naming the folder if empty.
    """
    frames: dict[int, tuple[str, Path]] = {}
    for entry in os.scandir(video_dir):
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        if not entry.is_file():
            raise ValueError(f"{path}: not a frame file (expected JPEG files named like frame_0000000001.jpg)")
        _add_frame(frames, frame_number(entry.name, str(path)), str(path), path)
    if not frames:
        raise ValueError(f"{video_dir}: no frame files (expected JPEG files named like frame_0000000001.jpg)")
    return [(n, path) for n, (_, path) in sorted(frames.items())]


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
    listed = [(n, str(path), path.read_bytes) for n, path in list_frames(video_dir)]
    return collect_frames(listed, video_id, str(video_dir), on_gap=on_gap, verify=verify, what=what)


def collect_frames(listed: Sequence[tuple[int, str, Callable[[], bytes]]], video_id: str, where: str, *,
                   on_gap: str = "error", verify: bool = False,
                   what: str = "frame") -> tuple[list[bytes], int, tuple[int, int], list[tuple[int, int]]]:
    """`read_frame_folder` for frames from any source: `listed` = (frame number, name of the file
    or archive member for errors, read() -> JPEG bytes) in numeric order; `where` names the
    folder or archive."""
    numbers = [n for n, _, _ in listed]
    gaps = _gaps(numbers)
    if gaps and on_gap != "fill":
        raise ValueError(f"{where}: video {video_id}: missing {what} file(s) {_describe_gaps(gaps)} "
                         f"(frames {numbers[0]}..{numbers[-1]}; use --on-gap fill to repeat the previous frame)")
    blobs: list[bytes] = []
    size: tuple[int, int] | None = None
    prev = numbers[0] - 1
    for number, name, read in listed:
        blob = read()
        check_jpeg(blob, f"{name} (video {video_id}, {what} {number})")
        if size is None or verify:
            img = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_UNCHANGED)
            if img is None:
                raise ValueError(f"{name} (video {video_id}, {what} {number}): corrupt JPEG, cannot be decoded")
            hw = (int(img.shape[0]), int(img.shape[1]))
            if size is not None and hw != size:
                raise ValueError(f"{name} (video {video_id}, {what} {number}): size {hw[1]}x{hw[0]} differs from "
                                 f"the video's first frame ({size[1]}x{size[0]})")
            size = hw
        blobs.extend([blobs[-1]] * (number - prev - 1) if blobs else [])
        blobs.append(blob)
        prev = number
    assert size is not None
    return blobs, numbers[0], size, gaps


# --------------------------------------------------------------------------------------------
# EPIC's archives: one <video_id>.tar per video
# --------------------------------------------------------------------------------------------

TAR_SUFFIX = ".tar"


class _NeedsTarfile(Exception):
    """An archive feature the plain-header reader leaves to `tarfile` (long names, pax headers,
    sparse or huge members, compression)."""


_BLOCK = 512
_FILE_TYPES = (b"0", b"\0", b"7")


def _octal(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:  # GNU base-256 number (a member over 8 GiB)
        raise _NeedsTarfile
    return int(field.split(b"\0", 1)[0].strip() or b"0", 8)


def _plain_tar_members(f, archive: Path) -> Iterator[tuple[str, bytes, bytes]]:
    """Yield (member name, type flag, data) of an uncompressed ustar/GNU archive in one
    sequential read. EPIC's archives hold thousands of small frames, where `tarfile`'s Python
    header parsing costs more than reading the file itself; anything but plain headers raises
    `_NeedsTarfile` so that `tarfile` reads the archive instead."""
    offset = 0
    while True:
        header = f.read(_BLOCK)
        if not header.strip(b"\0"):  # end of archive (or a tar without its two zero blocks)
            return
        if len(header) < _BLOCK:
            raise ValueError(f"{archive}: not a readable tar archive (truncated header at byte {offset})")
        if header[257:262] != b"ustar":
            raise _NeedsTarfile
        try:
            stored = _octal(header[148:156])
        except ValueError:
            stored = -1
        if stored != sum(header[:148]) + 256 + sum(header[156:]):  # the checksum field counts as spaces
            raise ValueError(f"{archive}: not a readable tar archive (bad header checksum at byte {offset})")
        kind = header[156:157]
        if kind in (b"L", b"K", b"x", b"g", b"S"):
            raise _NeedsTarfile
        try:
            size = _octal(header[124:136])
        except ValueError:
            raise ValueError(f"{archive}: not a readable tar archive (bad member size at byte {offset})") from None
        name = header[:100].split(b"\0", 1)[0]
        prefix = header[345:500].split(b"\0", 1)[0] if header[257:265] == b"ustar\x0000" else b""
        name = (prefix + b"/" + name) if prefix else name
        if kind in (b"0", b"\0") and name.endswith(b"/"):  # an old-style folder entry
            kind = b"5"
        data = f.read(size) if kind in _FILE_TYPES else b""
        if len(data) < (size if kind in _FILE_TYPES else 0):
            raise ValueError(f"{archive}: not a readable tar archive (member {name.decode(errors='replace')} is "
                             f"truncated)")
        f.seek(offset + _BLOCK + size + (-size) % _BLOCK)
        offset = f.tell()
        yield name.decode("utf-8", "surrogateescape"), kind, data


def _tarfile_members(archive: Path) -> Iterator[tuple[str, bytes, bytes]]:
    """`_plain_tar_members` through `tarfile` (any format it reads, compressed too)."""
    import tarfile

    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                kind = b"5" if member.isdir() else b"0" if member.isfile() else b"2"
                data = b""
                if member.isfile():  # the member's bytes straight from the archive (no file object)
                    tar.fileobj.seek(member.offset_data)
                    data = tar.fileobj.read(member.size)
                yield member.name, kind, data
    except tarfile.TarError as e:
        raise ValueError(f"{archive}: not a readable tar archive ({e})") from None


def _archive_members(archive: Path) -> list[tuple[str, bytes, bytes]]:
    """Return (name, type flag, data) of every member of `archive`."""
    try:
        with open(archive, "rb") as f:
            return list(_plain_tar_members(f, archive))
    except _NeedsTarfile:
        return list(_tarfile_members(archive))


def read_archive(archive: Path, *, channels: tuple[str, ...] = ()) -> dict[str, list[tuple[int, str, Callable[[], bytes]]]]:
    """Return the frames of a video's tar archive, read in archive order (one sequential pass,
    nothing unpacked to disk): {channel: [(frame number, "<archive>: member <name>", read)]} in
    numeric order.

    `channels` = () (RGB: members `./frame_0000000001.jpg`, channel "") or ("u", "v") (flow:
    members `./u/frame_*.jpg`, `./v/frame_*.jpg`). Folder members and hidden files are skipped;
    any other member (not a JPEG name, another folder, a link) is an error naming the archive
    and the member.
    """
    found: dict[str, dict[int, tuple[str, bytes]]] = {c: {} for c in (channels or ("",))}
    expected = "./u/frame_0000000001.jpg and ./v/..." if channels else "./frame_0000000001.jpg"
    for member_name, kind, data in _archive_members(archive):
        name = member_name[2:] if member_name.startswith("./") else member_name
        parts = [p for p in name.split("/") if p not in ("", ".")]
        where = f"{archive}: member {member_name}"
        if kind == b"5" or not parts or parts[-1].startswith("."):
            continue
        channel = parts[0] if channels else ""
        if kind not in _FILE_TYPES or len(parts) != (2 if channels else 1) or channel not in found:
            raise ValueError(f"{where}: not a frame of this archive (expected members like {expected})")
        _add_frame(found[channel], frame_number(parts[-1], where), where, data)
    for channel, frames in found.items():
        if not frames:
            raise ValueError(f"{archive}: no {f'{channel}/ ' if channel else ''}frame members (expected members like {expected})")
    return {c: [(n, where, (lambda b=blob: b)) for n, (where, blob) in sorted(frames.items())]
            for c, frames in found.items()}


def _sources(root: Path, what: str) -> dict[str, Path]:
    """Return {video id: folder or <video_id>.tar} under `root`; a video given both ways is an error."""
    found: dict[str, Path] = {}
    for p in root.iterdir():
        if p.name.startswith("."):
            continue
        if p.is_dir():
            vid = p.name
        elif p.is_file() and p.name.endswith(TAR_SUFFIX):
            vid = p.name[: -len(TAR_SUFFIX)]
        else:
            continue
        if vid in found:
            raise ValueError(f"{root}: video {vid} is there twice ({found[vid].name} and {p.name}); keep one of the "
                             f"{what} folder and the archive")
        found[vid] = p
    return found


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
    """Return (video id, frame folder or <video_id>.tar) for the videos under `root`."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"frames folder not found: {root}")
    found = _sources(root, "frame")
    if video_ids is not None:
        missing = [v for v in video_ids if v not in found]
        if missing:
            raise FileNotFoundError(f"{root}: no frame folder or archive for video(s) {', '.join(missing[:5])}")
        found = {v: found[v] for v in video_ids}
    if not found:
        raise ValueError(f"{root}: no video folders or archives (expected <video_id>/frame_0000000001.jpg ... "
                         f"or <video_id>.tar)")
    return [(v, found[v]) for v in sorted(found, key=natural_key)]


def _rgb_job(job: tuple[str, Path, str, bool]):
    vid, source, on_gap, verify = job
    if source.is_dir():
        return (vid,) + read_frame_folder(source, vid, on_gap=on_gap, verify=verify)
    listed = read_archive(source)[""]
    return (vid,) + collect_frames(listed, vid, str(source), on_gap=on_gap, verify=verify)


def count_frames(source: Path, channels: tuple[str, ...] = ()) -> tuple[int, int]:
    """Return (frames, JPEG bytes) of a frame folder or archive without reading the frames (an
    archive's member headers only; flow archives: `channels` ("u", "v"), frames counted in u/)."""
    if source.is_dir():
        files = [p for _, p in list_frames(source)]
        return len(files), sum(p.stat().st_size for p in files)
    import tarfile

    frames = size = 0
    try:
        with tarfile.open(source, "r:*") as tar:
            for m in tar:
                parts = [p for p in m.name.split("/") if p not in ("", ".")]
                if m.isfile() and parts and Path(parts[-1]).suffix.lower() in JPEG_SUFFIXES:
                    size += m.size
                    frames += not channels or parts[0] == channels[0]
    except tarfile.TarError as e:
        raise ValueError(f"{source}: not a readable tar archive ({e})") from None
    return frames, size


def _dry_run(command: str, out_path, videos: list[str], count, job, resume: bool, workers: int) -> DryRun:
    """The dry run of packing `videos`: `count(vid)` -> (frames, JPEG bytes) from the listing;
    `job(vid)` reads one video as packing does (the sample that times it)."""
    done = complete_videos(out_path) if resume else set()
    todo = [vid for vid in videos if vid not in done]
    counts = [count(vid) for vid in todo]

    def sample(i: int) -> tuple[int, int, int]:
        job(todo[i])
        return counts[i][1], counts[i][0], 0

    return estimate(command, [out_path], [(vid, n) for vid, (n, _) in zip(todo, counts)], len(videos) - len(todo),
                    workers, sample, exact_bytes=sum(b for _, b in counts))


def prepare_frames(frames_dir: str | os.PathLike, out_path: str | os.PathLike, *, workers: int = 1,
                   video_ids: Sequence[str] | None = None, fps: float | Mapping[str, float] = 60.0,
                   on_gap: str = "error", verify: bool = False, resume: bool = True,
                   show_progress: bool = True, dry_run: bool = False) -> PrepareSummary | DryRun:
    """Pack `<frames_dir>/<video_id>/*.jpg` (or `<frames_dir>/<video_id>.tar`) into rgb.h5 at
    `out_path`; return the summary.

    `fps`: one rate for all videos or {video_id: fps} (e.g. `read_video_info(...)`). A rerun skips
    videos already complete in `out_path`; the output is replaced only when every video is done.
    `dry_run`: write nothing; return the counts and the estimates (`DryRun`).
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
        if dry_run:
            source = dict(dirs)
            return _dry_run("prepare frames", out_path, list(source), lambda vid: count_frames(source[vid]),
                            lambda vid: _rgb_job((vid, source[vid], on_gap, verify)), resume, workers)
        space = SpaceCheck(out_path, resume=resume)
        with RGBWriter(out_path, resume=resume) as w:
            todo = [(vid, d, on_gap, verify) for vid, d in dirs if not w.has_video(vid)]
            summary.skipped = len(dirs) - len(todo)
            bar = progress(len(todo), "prepare frames", show_progress)
            for vid, blobs, first, (h, wd), gaps in imap_workers(_rgb_job, todo, workers):
                space.check(vid, (sum(map(len, blobs)), len(blobs)))
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
    """Return (video id, u folder, v folder) for `root/{u,v}/<video>` or `root/<video>/{u,v}`, or
    (video id, archive, archive) for `root/<video>.tar` (members `./u/...`, `./v/...`)."""
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
        for vid, p in _sources(root, "flow").items():
            if p.is_file():  # <video_id>.tar with u/ and v/ members
                pairs[vid] = (p, p)
                continue
            if not ((p / "u").is_dir() and (p / "v").is_dir()):
                raise ValueError(f"{p}: expected u/ and v/ folders of flow frames")
            pairs[vid] = (p / "u", p / "v")
    if video_ids is not None:
        missing = [v for v in video_ids if v not in pairs]
        if missing:
            raise FileNotFoundError(f"{root}: no flow folders for video(s) {', '.join(missing[:5])}")
        pairs = {v: pairs[v] for v in video_ids}
    if not pairs:
        raise ValueError(f"{root}: no flow folders or archives (expected u/<video_id>/frame_*.jpg and v/<video_id>/..., "
                         f"or <video_id>.tar with u/ and v/ members)")
    return [(v, *pairs[v]) for v in sorted(pairs, key=natural_key)]


def _flow_job(job: tuple[str, Path, Path, str, bool]):
    vid, udir, vdir, on_gap, verify = job
    if udir.is_file():  # one archive holds both
        members = read_archive(udir, channels=("u", "v"))
        us, first_u, size, gaps = collect_frames(members["u"], vid, f"{udir} (u/)", on_gap=on_gap, verify=verify,
                                                 what="flow frame (u)")
        vs, first_v, size_v, _ = collect_frames(members["v"], vid, f"{udir} (v/)", on_gap=on_gap, verify=verify,
                                                what="flow frame (v)")
    else:
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
                        resume: bool = True, show_progress: bool = True,
                        dry_run: bool = False) -> PrepareSummary | DryRun:
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
        if dry_run:
            by_vid = {vid: (u, v) for vid, u, v in dirs}

            def count(vid: str) -> tuple[int, int]:
                u, v = by_vid[vid]
                if u.is_file():
                    return count_frames(u, ("u", "v"))
                (n, a), (_, b) = count_frames(u), count_frames(v)
                return n, a + b

            return _dry_run("prepare flow-frames", out_path, list(by_vid), count,
                            lambda vid: _flow_job((vid, *by_vid[vid], on_gap, verify)), resume, workers)
        space = SpaceCheck(out_path, resume=resume)
        with FlowWriter(out_path, resume=resume) as w:
            todo = [(vid, u, v, on_gap, verify) for vid, u, v in dirs if not w.has_video(vid)]
            summary.skipped = len(dirs) - len(todo)
            bar = progress(len(todo), "prepare flow-frames", show_progress)
            for vid, us, vs, first, (h, wd), gaps in imap_workers(_flow_job, todo, workers):
                space.check(vid, (sum(map(len, us)) + sum(map(len, vs)), 2 * len(us)))
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


__all__ = ["list_frames", "read_frame_folder", "collect_frames", "read_archive", "frame_number", "read_video_info", "prepare_frames", "prepare_flow_frames",
           "jpeg_size"]
