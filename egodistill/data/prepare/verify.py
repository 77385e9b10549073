"""`prepare verify STORE [--annotations CSV ...]`: is a store ready for training?

Checks, read-only: every annotated video is in the store; its frames cover every annotated
segment (RGB and layout: frame numbers; flow: flow frames x stride, in RGB frames, as the
dataset reads them; audio: samples up to the segment's stop time); a sample of each video's
JPEGs (first, last and spread between) decodes. What each store holds and how it covers a
segment, its modality says (`Modality.span`, `check_segment`, `verify_jpegs`). Every problem names the video, the frame or the
annotation file and line.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import h5py
import numpy as np

from egodistill.data.stores import FORMAT_ATTR, open_store


@dataclass
class VerifyReport:
    store: str
    modality: str
    videos: int = 0
    segments: int = 0
    decoded: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self, max_problems: int = 20) -> str:
        head = (f"prepare verify {self.store} ({self.modality}): {self.videos:,} videos, {self.segments:,} annotated "
                f"segments checked, {self.decoded:,} JPEGs decoded: ")
        if self.ok:
            return head + "OK"
        lines = [head + f"{len(self.problems):,} problem(s)"]
        lines += [f"  {p}" for p in self.problems[:max_problems]]
        if len(self.problems) > max_problems:
            lines.append(f"  ... and {len(self.problems) - max_problems:,} more")
        return "\n".join(lines)


def _modality(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"store not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            fmt = f.attrs.get(FORMAT_ATTR)
    except OSError as e:
        raise ValueError(f"{path}: not an HDF5 store ({e})") from None
    if fmt is None:
        raise ValueError(f"{path}: no {FORMAT_ATTR!r} attribute; verify checks stores written by `egodistill prepare`")
    return fmt.decode() if isinstance(fmt, bytes) else str(fmt)


def _decode(report: VerifyReport, blobs: list[bytes], numbers: list[int], vid: str, what: str) -> None:
    for n, blob in zip(numbers, blobs):
        img = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_UNCHANGED)
        report.decoded += 1
        if img is None:
            report.problems.append(f"video {vid}: {what} {n} does not decode as a JPEG ({len(blob)} bytes)")


def verify_store(path: str | os.PathLike, *, annotations: list[str | os.PathLike] | None = None,
                 sample: int = 8) -> VerifyReport:
    """Check the store at `path` (against EPIC-style annotation CSVs when given); return the report."""
    from egodistill.data.annotations import read_csv
    from egodistill.data.modalities import get_modality

    path = Path(path)
    modality = _modality(path)
    store = open_store(modality, path)
    mod = get_modality(modality)
    report = VerifyReport(str(path), modality)
    videos = store.video_ids()
    report.videos = len(videos)
    have = set(videos)
    bad_videos: set[str] = set()
    for vid in videos:
        try:
            mod.span(store, vid)  # reads the video's entry
            for what, numbers, blobs in mod.verify_jpegs(store, vid, sample):
                _decode(report, blobs, numbers, vid, what)
        except (KeyError, OSError, ValueError) as e:
            bad_videos.add(vid)
            report.problems.append(f"video {vid}: cannot be read ({e})")
    for csv_path in annotations or []:
        csv_path = Path(csv_path)
        if not csv_path.is_file():
            raise FileNotFoundError(f"annotation file not found: {csv_path}")
        header, rows = read_csv(csv_path, ("video_id", "start_frame", "stop_frame"))
        timed = "stop_timestamp" in header
        for line, row in rows:
            vid = row["video_id"]
            where = f"{csv_path}, line {line} ({row.get('narration_id', vid)})"
            report.segments += 1
            if vid not in have:
                report.problems.append(f"{where}: video {vid} is not in the store")
                continue
            if vid in bad_videos:
                continue
            try:
                start, stop = int(row["start_frame"]), int(row["stop_frame"])
            except ValueError:
                report.problems.append(f"{where}: start_frame / stop_frame are not integers")
                continue
            problem = mod.check_segment(store, vid, start, stop, row["stop_timestamp"] if timed else None)
            if problem:
                report.problems.append(f"{where}: {problem}")
    return report
