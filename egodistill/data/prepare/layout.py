"""`prepare layout`: box annotations / detections into layout.h5 (per-frame padded boxes).

Two inputs (docs/stores.md):

* `something_else`: the Something-Else `annotations.json` ({video id: [frame dict, ...]}, each
  frame named "<video>/<%04d>.jpg", 1-based, boxes `box2d` {x1,y1,x2,y2} in pixels). Boxes are
  normalised by the video's frame size: from `sizes` ({video id: [width, height]}, the authors'
  `videoid2size.json`) when given, else estimated as the largest box extent in the video
  (max x2, max y2; reported in the summary, since boxes rarely reach the right/bottom edge
  this overestimates the size slightly). Like the authors: inverted coordinates are swapped and
  boxes clamped to the frame; category 1 for "hand" (standard_category), 2 otherwise; score 1;
  no side / state.
* `hand_object`: a JSON of hand-object detections mirroring EPIC's release:
  `{video: {"num_frames"?: int, "first_frame"?: int, "frames": {"<frame>": {"hands": [{"box",
  "score", "side", "state"}], "objects": [{"box", "score"}]}}}}` with boxes normalised to [0, 1].

Per frame, hands come first (in file order) then objects (by descending score); at most
`max_boxes` are kept (the rest are counted in the summary). Frames without boxes are all padding.
"""
from __future__ import annotations

import contextlib

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from egodistill.data.prepare.common import (
    DryRun, PrepareSummary, SpaceCheck, Timer, complete_videos, dry_run_need, free_space, natural_key, progress,
)
from egodistill.data.stores import (
    CATEGORY_HAND, CATEGORY_OBJECT, LayoutWriter, SIDE_LEFT, SIDE_NONE, SIDE_RIGHT, STATE_NONE, check_video_id,
)

FORMATS = ("something_else", "hand_object")
SIDES = {"left": SIDE_LEFT, "right": SIDE_RIGHT, 0: SIDE_LEFT, 1: SIDE_RIGHT}


def _load_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"layout source not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None


class _VideoBoxes:
    """Accumulates one video's boxes frame by frame, then packs them into padded arrays."""

    def __init__(self, first_frame: int, num_frames: int, max_boxes: int):
        self.first, self.n, self.max_boxes = first_frame, num_frames, max_boxes
        self.frames: dict[int, list[tuple[list[float], int, float, int, int]]] = {}
        self.dropped = 0

    def add(self, frame: int, items: list[tuple[list[float], int, float, int, int]]) -> None:
        if len(items) > self.max_boxes:
            self.dropped += len(items) - self.max_boxes
            items = items[:self.max_boxes]
        self.frames[frame] = items

    def arrays(self) -> dict[str, np.ndarray]:
        f, n = self.n, self.max_boxes
        out = {"boxes": np.zeros((f, n, 4), np.float32), "category": np.zeros((f, n), np.int8),
               "score": np.zeros((f, n), np.float32), "side": np.full((f, n), SIDE_NONE, np.int8),
               "state": np.full((f, n), STATE_NONE, np.int8), "valid": np.zeros((f, n), bool)}
        for frame, items in self.frames.items():
            t = frame - self.first
            for j, (box, cat, score, side, state) in enumerate(items):
                out["boxes"][t, j] = box
                out["category"][t, j] = cat
                out["score"][t, j] = score
                out["side"][t, j] = side
                out["state"][t, j] = state
                out["valid"][t, j] = True
        return out

    def count(self) -> int:
        return sum(len(v) for v in self.frames.values())


# --------------------------------------------------------------------------------------------
# Something-Else annotations.json
# --------------------------------------------------------------------------------------------


def _number(x: Any, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError(f"{what}: expected a number, got {x!r}")
    return float(x)


def something_else_video(video_id: str, frames: Any, *, size: tuple[float, float] | None, max_boxes: int,
                         source: str) -> tuple[_VideoBoxes, bool]:
    """Return one Something-Else video's boxes and whether its size was estimated from the boxes."""
    if not isinstance(frames, list):
        raise ValueError(f"{source}: video {video_id}: expected a list of frame dicts, got {type(frames).__name__}")
    parsed: list[tuple[int, list[tuple[float, float, float, float, bool]]]] = []
    for i, fr in enumerate(frames):
        where = f"{source}: video {video_id}, frame entry {i}"
        if not isinstance(fr, dict) or "name" not in fr or "labels" not in fr:
            raise ValueError(f"{where}: expected a dict with keys 'name' and 'labels'")
        name = str(fr["name"])
        vid_part, _, file_part = name.rpartition("/")
        stem = file_part.rsplit(".", 1)[0]
        if vid_part != video_id or not stem.isdigit():
            raise ValueError(f"{where}: key 'name' is {name!r}, expected '{video_id}/<frame number>.jpg'")
        boxes = []
        for j, lab in enumerate(fr["labels"]):
            lw = f"{where} ({name}), label {j}"
            b = lab.get("box2d") if isinstance(lab, dict) else None
            if not isinstance(b, dict) or any(k not in b for k in ("x1", "y1", "x2", "y2")):
                raise ValueError(f"{lw}: key 'box2d' must be a dict with x1, y1, x2, y2")
            x1, y1, x2, y2 = (_number(b[k], f"{lw}, box2d.{k}") for k in ("x1", "y1", "x2", "y2"))
            hand = str(lab.get("standard_category", "")) == "hand" or "hand" in str(lab.get("category", ""))
            boxes.append((min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2), hand))
        parsed.append((int(stem), boxes))
    if not parsed:
        raise ValueError(f"{source}: video {video_id} has no frames")
    numbers = [n for n, _ in parsed]
    if len(set(numbers)) != len(numbers):
        dup = sorted(n for n in set(numbers) if numbers.count(n) > 1)[0]
        raise ValueError(f"{source}: video {video_id}: frame {dup} appears twice")
    estimated = size is None
    if size is None:
        xs = [b[2] for _, bs in parsed for b in bs]
        ys = [b[3] for _, bs in parsed for b in bs]
        size = (max(xs, default=1.0), max(ys, default=1.0))
    w, h = float(size[0]), float(size[1])
    if w <= 0 or h <= 0:
        raise ValueError(f"{source}: video {video_id}: frame size {w}x{h} must be positive")
    first, last = min(1, min(numbers)), max(numbers)
    vb = _VideoBoxes(first, last - first + 1, max_boxes)
    for number, boxes in parsed:
        items = []
        for x1, y1, x2, y2, hand in sorted(boxes, key=lambda b: not b[4]):  # hands first
            box = [min(max(x1 / w, 0.0), 1.0), min(max(y1 / h, 0.0), 1.0),
                   min(max(x2 / w, 0.0), 1.0), min(max(y2 / h, 0.0), 1.0)]
            items.append((box, CATEGORY_HAND if hand else CATEGORY_OBJECT, 1.0, SIDE_NONE, STATE_NONE))
        vb.add(number, items)
    return vb, estimated


# --------------------------------------------------------------------------------------------
# Hand-object detections JSON
# --------------------------------------------------------------------------------------------


def _box(value: Any, what: str) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise ValueError(f"{what}: key 'box' must be [x1, y1, x2, y2], got {value!r}")
    box = [_number(v, f"{what}, box") for v in value]
    if not all(0.0 <= v <= 1.0 for v in box) or box[0] > box[2] or box[1] > box[3]:
        raise ValueError(f"{what}: box {box} must be normalised to [0, 1] with x1 <= x2 and y1 <= y2")
    return box


def hand_object_video(video_id: str, entry: Any, *, max_boxes: int, hand_threshold: float,
                      object_threshold: float, source: str) -> _VideoBoxes:
    """Return one video's boxes from the hand-object JSON (format: module doc, docs/stores.md)."""
    where = f"{source}: video {video_id}"
    if not isinstance(entry, dict) or not isinstance(entry.get("frames"), dict):
        raise ValueError(f"{where}: expected a dict with key 'frames' ({{frame number: detections}})")
    frames: dict[int, Any] = {}
    for key, dets in entry["frames"].items():
        try:
            number = int(key)
        except ValueError:
            raise ValueError(f"{where}: frame key {key!r} is not a frame number") from None
        frames[number] = dets
    first = int(entry.get("first_frame", 1))
    last = max(frames, default=first)
    n = int(entry.get("num_frames", last - first + 1))
    if n < 1:
        raise ValueError(f"{where}: num_frames must be >= 1, got {n}")
    vb = _VideoBoxes(first, n, max_boxes)
    for number in sorted(frames):
        fw = f"{where}, frame {number}"
        if not first <= number < first + n:
            raise ValueError(f"{fw}: outside the video's frames {first}..{first + n - 1} (num_frames {n})")
        dets = frames[number]
        if not isinstance(dets, dict):
            raise ValueError(f"{fw}: expected a dict with keys 'hands' and 'objects'")
        items = []
        for j, hand in enumerate(dets.get("hands", [])):
            hw = f"{fw}, hand {j}"
            if not isinstance(hand, dict):
                raise ValueError(f"{hw}: expected a dict with box, score, side, state")
            score = _number(hand.get("score", 1.0), f"{hw}, score")
            side = hand.get("side")
            side = side.lower() if isinstance(side, str) else side
            if side not in SIDES:
                raise ValueError(f"{hw}: key 'side' must be 'left' or 'right' (or 0 / 1), got {hand.get('side')!r}")
            state = hand.get("state", 0)
            if isinstance(state, bool) or state not in (0, 1, 2, 3, 4):
                raise ValueError(f"{hw}: key 'state' must be EPIC's HandState 0..4, got {state!r}")
            box = _box(hand.get("box"), hw)
            if score >= hand_threshold:
                items.append((box, CATEGORY_HAND, score, SIDES[side], int(state)))
        objects = []
        for j, obj in enumerate(dets.get("objects", [])):
            ow = f"{fw}, object {j}"
            if not isinstance(obj, dict):
                raise ValueError(f"{ow}: expected a dict with box, score")
            score = _number(obj.get("score", 1.0), f"{ow}, score")
            box = _box(obj.get("box"), ow)
            if score >= object_threshold:
                objects.append((box, CATEGORY_OBJECT, score, SIDE_NONE, STATE_NONE))
        objects.sort(key=lambda it: -it[2])
        vb.add(number, items + objects)
    return vb


# --------------------------------------------------------------------------------------------


class StoreFrameSizes(Mapping):
    """{video id: (width, height)} of the frames in an RGB store, read as asked.

    Our stores record each video's size; for the authors' layouts (no attributes) the size is
    read from the first frame's JPEG header. Pass it as `prepare_layout(..., sizes=...)` when the
    Something-Else videos are already in an rgb.h5: their boxes are then normalised exactly.
    """

    def __init__(self, rgb_path: str | os.PathLike):
        from egodistill.data.stores import RGBStore

        self.path = Path(rgb_path)
        if not self.path.is_file():
            raise FileNotFoundError(f"rgb store not found: {self.path}")
        self.store = RGBStore(self.path)

    def __getitem__(self, video_id: str) -> tuple[int, int]:
        from egodistill.data.stores import jpeg_size

        if video_id not in self.store:
            raise KeyError(video_id)
        try:
            h, w = self.store.frame_size(video_id)
        except KeyError:  # the authors' layouts record no size
            first = self.store.first_frame(video_id)
            h, w = jpeg_size(self.store.read_frames(video_id, [first])[0], f"{self.path}: video {video_id}, frame {first}")
        return (w, h)

    def __iter__(self):
        return iter(self.store.video_ids())

    def __len__(self) -> int:
        return len(self.store.video_ids())

    def __str__(self) -> str:
        return f"{self.path} (frame sizes)"


def prepare_layout(source: str | os.PathLike, out_path: str | os.PathLike, *, format: str,
                   sizes: str | os.PathLike | Mapping[str, Sequence[float]] | None = None, max_boxes: int = 14,
                   hand_threshold: float = 0.0, object_threshold: float = 0.0,
                   video_ids: Sequence[str] | None = None, resume: bool = True,
                   show_progress: bool = True, dry_run: bool = False) -> PrepareSummary | DryRun:
    """Convert `source` (format "something_else" or "hand_object") into layout.h5 at `out_path`.

    `sizes`: {video id: [width, height]}, a JSON file of it, or `StoreFrameSizes(rgb.h5)`
    (Something-Else only). Thresholds
    drop hand / object detections scoring below them (hand_object only). A rerun skips videos
    already complete; the output is replaced only when every video is done.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown layout format {format!r}: expected one of {', '.join(FORMATS)}")
    if max_boxes < 1:
        raise ValueError(f"max_boxes must be >= 1, got {max_boxes}")
    summary = PrepareSummary(f"prepare layout ({format})", out=str(out_path))
    with Timer() as t:
        data = _load_json(source)
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object {{video id: ...}}, got {type(data).__name__}")
        size_map: Mapping[str, Sequence[float]] | None = None
        if sizes is not None:
            size_map = sizes if isinstance(sizes, Mapping) else _load_json(sizes)
        ids = sorted(data, key=natural_key) if video_ids is None else list(video_ids)
        missing = [v for v in ids if v not in data]
        if missing:
            raise KeyError(f"{source}: video(s) {', '.join(missing[:5])} not in the file")
        estimated, dropped = [], 0
        done = complete_videos(out_path) if dry_run and resume else set()
        # --dry-run converts every video in memory (fast) and writes nothing
        space = None if dry_run else SpaceCheck(out_path, resume=resume)
        with (contextlib.nullcontext() if dry_run else LayoutWriter(out_path, resume=resume)) as w:
            todo = [v for v in ids if not (w.has_video(check_video_id(str(v))) if w else check_video_id(str(v)) in done)]
            summary.skipped = len(ids) - len(todo)
            bar = progress(len(todo), "prepare layout", show_progress)
            for vid in todo:
                if format == "something_else":
                    size = None
                    if size_map is not None:
                        if vid not in size_map:
                            raise KeyError(f"{sizes}: no frame size for video {vid}")
                        s = size_map[vid]
                        if not isinstance(s, (list, tuple)) or len(s) != 2:
                            raise ValueError(f"{sizes}: video {vid}: expected [width, height], got {s!r}")
                        size = (float(s[0]), float(s[1]))
                    vb, est = something_else_video(vid, data[vid], size=size, max_boxes=max_boxes, source=str(source))
                    if est:
                        estimated.append(vid)
                else:
                    vb = hand_object_video(vid, data[vid], max_boxes=max_boxes, hand_threshold=hand_threshold,
                                           object_threshold=object_threshold, source=str(source))
                arrays = vb.arrays()
                if w is not None:
                    space.check(vid, (sum(a.nbytes for a in arrays.values()), len(arrays)))
                    w.add_video(vid, first_frame=vb.first, source_format=format, **arrays)
                dropped += vb.dropped
                summary.videos += 1
                summary.frames += vb.n
                summary.bytes += sum(a.nbytes for a in arrays.values())
                bar.update(1)
            bar.close()
        if estimated:
            summary.warnings.append(f"{len(estimated)} video(s) without a frame size: normalised by their largest "
                                    f"box extent (pass sizes, {{id: [width, height]}}, for exact boxes)")
        if dropped:
            summary.warnings.append(f"{dropped} box(es) beyond max_boxes={max_boxes} were dropped")
    summary.seconds = t.seconds
    if dry_run:
        return DryRun(summary.command, str(out_path), videos=summary.videos, skipped=summary.skipped,
                      frames=summary.frames, bytes=summary.bytes, seconds=t.seconds,
                      need=dry_run_need(summary.bytes, [out_path], resume=resume), free=free_space(out_path),
                      basis="converting every video in memory", warnings=summary.warnings)
    return summary
