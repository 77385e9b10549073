"""`prepare flow`: optical flow from rgb.h5 into flow.h5 with OpenCV.

Method: TV-L1 (`cv2.optflow.DualTVL1OpticalFlow`, what EPIC used) when OpenCV has the contrib
module, else DIS (`cv2.DISOpticalFlow`, medium preset); "farneback" is also available.

Frame pairing: with RGB frames `first .. first + n - 1` and stride s, the video gets
`max(1, n // s)` flow frames (EPIC's count: 99,135 RGB frames -> 49,567 flow frames). Flow frame
`first + k` is the motion from RGB frame `first + k*s` to `first + k*s + s` (the last RGB frame
when that is past the end), so RGB frame r maps to flow frame `first + ceil((r - first + 1) / s) - 1`
(EPIC, 1-based: ceil(r / 2)). The stride and first frame are the flow store's attributes.

Quantisation (EPIC's linear map from [-bound, bound] to [0, 255]):
`q = round(clip(flow, -bound, bound) / bound * 127.5 + 127.5)` as uint8, so no motion is 128
(127.5 rounds half to even), +bound is 255 and -bound is 0. u (horizontal, + right) and
v (vertical, + down) are stored as separate grey JPEGs.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from egodistill.data.prepare.common import (
    DryRun, PrepareSummary, SpaceCheck, Timer, check_workers, complete_videos, estimate, imap_workers, progress,
)
from egodistill.data.stores import FlowWriter, RGBStore

METHODS = ("auto", "tvl1", "dis", "farneback")


def resolve_method(method: str) -> str:
    """Return the concrete method for `method` ("auto": tvl1 if cv2.optflow exists, else dis)."""
    if method not in METHODS:
        raise ValueError(f"unknown flow method {method!r}: expected one of {', '.join(METHODS)}")
    has_tvl1 = hasattr(cv2, "optflow") and hasattr(cv2.optflow, "DualTVL1OpticalFlow_create")
    if method == "auto":
        return "tvl1" if has_tvl1 else "dis"
    if method == "tvl1" and not has_tvl1:
        raise ValueError("flow method 'tvl1' needs OpenCV's contrib module cv2.optflow "
                         "(opencv-contrib-python); use --method dis or auto")
    return method


class FlowEstimator:
    """Dense optical flow between two grey uint8 frames `[H, W]` -> float32 `[H, W, 2]` (u, v) in pixels."""

    def __init__(self, method: str = "auto"):
        self.method = resolve_method(method)
        if self.method == "tvl1":
            self._algo = cv2.optflow.DualTVL1OpticalFlow_create()
        elif self.method == "dis":
            self._algo = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        else:
            self._algo = None

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        if self.method == "farneback":
            return cv2.calcOpticalFlowFarneback(prev, nxt, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        return self._algo.calc(prev, nxt, None)


def quantise(flow: np.ndarray, bound: float) -> np.ndarray:
    """Return flow (pixels, any shape) as uint8: round(clip(f, -bound, bound) / bound * 127.5 + 127.5)."""
    q = np.clip(flow, -bound, bound) * (127.5 / bound) + 127.5
    return np.round(q).astype(np.uint8)


def dequantise(q: np.ndarray, bound: float) -> np.ndarray:
    """Return the flow (pixels, float32) that `quantise` maps to `q` (up to rounding)."""
    return (q.astype(np.float32) - 127.5) * (bound / 127.5)


def flow_pairs(num_rgb: int, stride: int) -> list[tuple[int, int]]:
    """Return the 0-based RGB offsets (a, b) whose flow a -> b is each flow frame (see module doc)."""
    if num_rgb < 1 or stride < 1:
        raise ValueError(f"flow pairs need num_rgb >= 1 and stride >= 1, got {num_rgb}, {stride}")
    pairs = []
    for k in range(max(1, num_rgb // stride)):
        a = k * stride
        b = min(a + stride, num_rgb - 1)
        if b == a and a > 0:  # the last frame has no successor: use its predecessor's motion
            a = a - 1
        pairs.append((a, b))
    return pairs


def _decode_grey(blob: bytes, what: str) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError(f"{what}: corrupt JPEG, cannot be decoded")
    return img


def _encode_grey(img: np.ndarray, quality: int, what: str) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"{what}: JPEG encoding failed")
    return buf.tobytes()


def compute_video_flow(rgb: RGBStore, video_id: str, *, stride: int, bound: float, method: str,
                       quality: int) -> tuple[list[bytes], list[bytes]]:
    """Return (u JPEGs, v JPEGs) of one video's flow frames (pairing and quantisation: module doc)."""
    n, first = rgb.num_frames(video_id), rgb.first_frame(video_id)
    estimator = FlowEstimator(method)
    us, vs = [], []
    cache: dict[int, np.ndarray] = {}
    for k, (a, b) in enumerate(flow_pairs(n, stride)):
        frames = []
        for off in (a, b):
            if off not in cache:
                blob = rgb.read_frames(video_id, [first + off])[0]
                cache[off] = _decode_grey(blob, f"{rgb.path}: video {video_id}, frame {first + off}")
            frames.append(cache[off])
        for off in [o for o in cache if o < a]:  # only the current pair's frames are kept
            del cache[off]
        flow = estimator(frames[0], frames[1]) if a != b else np.zeros(frames[0].shape + (2,), np.float32)
        q = quantise(flow, bound)
        what = f"video {video_id}, flow frame {first + k}"
        us.append(_encode_grey(q[..., 0], quality, what))
        vs.append(_encode_grey(q[..., 1], quality, what))
    return us, vs


def _job(job: tuple[str, str, int, float, str, int]):
    rgb_path, vid, stride, bound, method, quality = job
    rgb = RGBStore(rgb_path)
    us, vs = compute_video_flow(rgb, vid, stride=stride, bound=bound, method=method, quality=quality)
    try:
        size = rgb.frame_size(vid)
    except KeyError:  # a store that records no size (authors' layout): the writer reads the JPEGs
        size = (None, None)
    return vid, us, vs, rgb.first_frame(vid), rgb.fps(vid), size


def prepare_flow(rgb_path: str | os.PathLike, flow_out: str | os.PathLike, *, stride: int = 2,
                 bound: float = 20.0, method: str = "auto", workers: int = 1, quality: int = 95,
                 video_ids: Sequence[str] | None = None, resume: bool = True,
                 show_progress: bool = True, dry_run: bool = False) -> PrepareSummary | DryRun:
    """Compute flow for every video of rgb.h5 (or `video_ids`) into flow.h5 at `flow_out`.

    A rerun skips videos already complete in `flow_out`; the output is replaced only at the end.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if bound <= 0:
        raise ValueError(f"bound must be > 0, got {bound}")
    workers = check_workers(workers)
    method = resolve_method(method)
    summary = PrepareSummary(f"prepare flow ({method})", out=str(flow_out))
    with Timer() as t:
        rgb = RGBStore(rgb_path)
        have = rgb.video_ids()
        if video_ids is None:
            video_ids = have
        else:
            missing = [v for v in video_ids if v not in rgb]
            if missing:
                raise KeyError(f"{rgb_path}: video(s) {', '.join(missing[:5])} not in the rgb store")
        if dry_run:
            done = complete_videos(flow_out) if resume else set()
            todo = [v for v in video_ids if v not in done]

            def sample(i: int) -> tuple[int, int, int]:
                _, us, vs, *_ = _job((str(rgb_path), todo[i], stride, bound, method, quality))
                return sum(map(len, us)) + sum(map(len, vs)), len(us), 0

            return estimate(summary.command, [flow_out], [(v, len(flow_pairs(rgb.num_frames(v), stride))) for v in todo],
                            len(video_ids) - len(todo), workers, sample)
        space = SpaceCheck(flow_out, resume=resume)
        with FlowWriter(flow_out, resume=resume) as w:
            todo = [(str(rgb_path), v, stride, bound, method, quality) for v in video_ids if not w.has_video(v)]
            summary.skipped = len(video_ids) - len(todo)
            bar = progress(len(todo), "prepare flow", show_progress)
            for vid, us, vs, first, fps, (h, wd) in imap_workers(_job, todo, workers):
                space.check(vid, (sum(map(len, us)) + sum(map(len, vs)), 2 * len(us)))
                w.add_video(vid, us, vs, fps=fps / stride, first_frame=first, stride=stride, bound=bound,
                            height=h, width=wd, method=method, rgb_first_frame=first,
                            quantisation="q = round(clip(flow, -bound, bound) / bound * 127.5 + 127.5)")
                summary.videos += 1
                summary.frames += len(us)
                summary.bytes += sum(map(len, us)) + sum(map(len, vs))
                bar.update(1)
            bar.close()
    summary.seconds = t.seconds
    return summary
