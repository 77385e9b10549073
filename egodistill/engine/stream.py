"""Video files as a stream of frames and of fixed-length windows, in bounded memory.

`VideoReader` decodes a file's first video stream with PyAV one frame at a time: RGB uint8,
short side resized to `short_side` (never upscaled), turned upright when the file carries
rotation metadata, each with its presentation time in seconds from the first frame (so a
variable frame rate is read as it is). A file that stops decoding part way (cut off, damaged)
yields what decoded and records a warning with the time where decoding stopped.

`windows(frames, window, hop)` groups the frames into windows `[k*hop, k*hop + window)` seconds,
holding only the frames of the windows not yet complete: memory is bounded by the window,
never by the file. A video shorter than one window is one window over all of it.
"""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

from egodistill.data.prepare.video import VIDEO_SUFFIXES, resized_size


@dataclass
class Window:
    """Frames of one window: `start`/`end` in seconds, `frames` RGB uint8 [H, W, 3] in time order."""

    index: int
    start: float
    end: float
    frames: list[np.ndarray]


@dataclass
class VideoReader:
    """Frames of `path`'s first video stream; iterate for `(time in s, RGB uint8 [H, W, 3])`.

    Opening checks the file (exists, is a video, has a video stream) and reads the header:
    `fps` (0.0 when unknown), `duration` (seconds, None when unknown), `rotation` (degrees
    counterclockwise the frames are turned to be upright). After iterating: `decoded` frames,
    `last_time`, and `warning` (None, or why the stream ended early and where).
    """

    path: Path
    short_side: int = 256
    fps: float = 0.0
    duration: float | None = None
    rotation: int = 0
    decoded: int = 0
    last_time: float = 0.0
    warning: str | None = None
    _container: object = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        path = self.path
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a folder, not a video file")
        if not path.is_file():
            raise FileNotFoundError(f"video file not found: {path}")
        try:
            container = av.open(str(path))
        except (av.FFmpegError, OSError) as e:
            raise ValueError(f"{path}: cannot be opened as a video ({e})") from None
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["no streams"]
            container.close()
            raise ValueError(f"{path}: has no video stream (it holds {', '.join(kinds)}); expected a video file")
        self._container = container
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else 0.0
        if stream.duration and stream.time_base:
            self.duration = float(stream.duration * stream.time_base)
        elif container.duration:
            self.duration = container.duration / av.time_base

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        if self._container is None:
            raise ValueError(f"{self.path}: the reader is closed (a VideoReader is read once)")
        container = self._container
        stream = container.streams.video[0]
        size = None
        t0 = None
        try:
            frames = container.decode(stream)
            while True:
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                except av.FFmpegError as e:
                    if not self.decoded:
                        raise ValueError(f"{self.path}: no video frame could be decoded ({e})") from None
                    self.warning = (f"decoding stopped at {self.last_time:.2f} s after {self.decoded} frame(s) "
                                    f"({e}); predicted what decoded")
                    break
                if frame.pts is not None and frame.time_base is not None:
                    t = float(frame.pts * frame.time_base)
                else:
                    t = self.decoded / self.fps if self.fps else float(self.decoded)
                t0 = t if t0 is None else t0
                t -= t0
                if self.decoded and t <= self.last_time:  # a repeated or out-of-order stamp
                    t = self.last_time + (1.0 / self.fps if self.fps else 1e-3)
                if size is None:
                    self.rotation = int(round(getattr(frame, "rotation", 0) or 0)) % 360
                    size = resized_size(frame.height, frame.width, self.short_side)
                img = frame.to_ndarray(format="rgb24")  # [H, W, 3]
                if img.shape[:2] != size:
                    img = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)
                if self.rotation % 90 == 0 and self.rotation:
                    img = np.ascontiguousarray(np.rot90(img, k=self.rotation // 90))  # counterclockwise, as stored
                self.decoded += 1
                self.last_time = t
                yield t, img
        finally:
            self.close()
        if not self.decoded:
            raise ValueError(f"{self.path}: no video frame could be decoded")
        if self.warning is None:
            self.warning = self._truncation()

    def _truncation(self) -> str | None:
        """Return a note when the header announces clearly more video than decoded, else None."""
        if not self.duration or not self.fps:
            return None
        end = self.last_time + 1.0 / self.fps
        if self.duration - end <= max(2.0 / self.fps, 0.01 * self.duration):
            return None
        return (f"truncated: decoding stopped at {self.last_time:.2f} s of {self.duration:.2f} s "
                f"({self.decoded} frames); predicted what decoded")

    def frame_seconds(self) -> float:
        """Return the display time of one frame (1/fps; 0.0 when the rate is unknown)."""
        return 1.0 / self.fps if self.fps else 0.0


def windows(frames: Iterable[tuple[float, np.ndarray]], window: float, hop: float,
            frame_seconds: float = 0.0) -> Iterator[Window]:
    """Yield the windows `[k*hop, k*hop + window)` (seconds) of timed frames, in order.

    Only the frames of windows not yet complete are held. Windows with no frame (a gap in the
    timestamps, or `hop > window`) are skipped. When the frames end, the earliest unfinished
    window is yielded if it holds a frame no yielded window covered (its `end` is then the last
    frame's time plus `frame_seconds`): a video shorter than one window gives one window of all
    its frames.
    """
    if not (window > 0 and hop > 0) or not np.isfinite(window) or not np.isfinite(hop):
        raise ValueError(f"window and hop must be positive seconds, got window={window}, hop={hop}")
    held: deque[tuple[float, np.ndarray]] = deque()
    k = 0
    covered = -np.inf  # end of the last yielded window
    last_t = None

    def start(i: int) -> float:
        return i * hop

    for t, img in frames:
        last_t = t
        while t >= start(k) + window:  # window k is complete
            inside = [f for s, f in held if s < start(k) + window]
            if inside:
                yield Window(k, start(k), start(k) + window, inside)
                covered = start(k) + window
            k += 1
            while held and held[0][0] < start(k):
                held.popleft()
            if not held and t >= start(k) + window:  # skip the empty windows of a long gap at once
                k = max(k, int(np.floor((t - window) / hop)) + 1)
        if t >= start(k):
            held.append((t, img))
    if held and last_t is not None and last_t >= covered:
        yield Window(k, start(k), max(last_t + frame_seconds, start(k)), [f for _, f in held])


def video_files(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Return `inputs` with each folder replaced by its video files (sorted by name); a folder
    with none raises FileNotFoundError naming it."""
    suffixes = VIDEO_SUFFIXES
    files: list[Path] = []
    for p in map(Path, inputs):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in suffixes)
            if not found:
                raise FileNotFoundError(f"{p} is a folder with no video files in it ({', '.join(suffixes)}); "
                                        f"give video files or a folder of them")
            files.extend(found)
        else:
            files.append(p)
    return files
