"""`prepare video` / `prepare audio`: video files into rgb.h5 + audio.h5, audio files into audio.h5 (PyAV).

Video (mp4, webm, mkv, avi, anything FFmpeg decodes): frames are resized so the short side is
`short_side` (0 keeps the size; never upscaled), JPEG-encoded at `quality` and numbered from 1
(as EPIC's frame files). With `fps`, frames are resampled in time: output frame k (0-based) is
the last decoded frame whose timestamp is <= k / fps, for k while k / fps is within the video
(frames are repeated when `fps` exceeds the source rate, dropped when below).

A file that decodes clearly fewer frames than its header announces (a faststart mp4 cut
short: its index is whole, its data ends early) is an error naming the file, the frames expected
and the time where decoding stopped, unless `allow_truncated`, which packs what decoded and
reports it in the summary. Containers whose header gives neither a frame count nor a duration
cannot be checked.

Audio: the first audio stream, downmixed to mono and resampled to `sample_rate` by FFmpeg's
resampler, stored float32 in [-1, 1]. A video without audio is an error naming the file unless
`allow_silent`, which stores zeros as long as the video (and reports it in the summary).

The video id is the file's stem (`P01_01.MP4` -> `P01_01`).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import av
import cv2
import numpy as np

from egodistill.data.prepare.common import (
    DryRun, PrepareSummary, SpaceCheck, Timer, check_workers, complete_videos, estimate, imap_workers, progress,
)
from egodistill.data.stores import AudioWriter, RGBWriter, check_video_id

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v")


def resized_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """Return (height, width) with the short side `short_side` (even-rounded aspect), never upscaled."""
    if not short_side or min(height, width) <= short_side:
        return height, width
    scale = short_side / min(height, width)
    if height <= width:
        return short_side, max(1, int(round(width * scale)))
    return max(1, int(round(height * scale))), short_side


def _open(path: Path):
    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError) as e:
        raise ValueError(f"{path}: cannot be opened as a video or audio file ({e})") from None


class _AudioCollector:
    """Decoded audio frames -> one mono float32 waveform at `rate`."""

    def __init__(self, rate: int):
        self.resampler = av.AudioResampler(format="flt", layout="mono", rate=int(rate))
        self.chunks: list[np.ndarray] = []

    def add(self, frame) -> None:
        for out in self.resampler.resample(frame):
            self.chunks.append(out.to_ndarray().reshape(-1))

    def finish(self) -> np.ndarray:
        for out in self.resampler.resample(None):  # flush the resampler's delay line
            self.chunks.append(out.to_ndarray().reshape(-1))
        if not self.chunks:
            return np.zeros(0, np.float32)
        return np.concatenate(self.chunks).astype(np.float32, copy=False)


def decode_video(path: str | os.PathLike, *, short_side: int = 256, quality: int = 90, fps: float | None = None,
                 sample_rate: int = 24000, want_audio: bool = True) -> dict:
    """Decode one video file; return {"jpegs": list[bytes], "fps": float, "height", "width",
    "audio": float32 [n] or None when the file has no audio stream, "duration": seconds,
    "truncated": a note when fewer frames decoded than the header announces, else None}.

    Raises ValueError naming the file when it cannot be opened or decoded or has no video stream.
    """
    path = Path(path)
    container = _open(path)
    try:
        if not container.streams.video:
            raise ValueError(f"{path}: has no video stream")
        vstream = container.streams.video[0]
        vstream.thread_type = "AUTO"
        astream = container.streams.audio[0] if (want_audio and container.streams.audio) else None
        src_rate = vstream.average_rate or vstream.guessed_rate
        src_fps = float(src_rate) if src_rate else 0.0
        out_fps = float(fps) if fps else src_fps
        if out_fps <= 0:
            raise ValueError(f"{path}: the video stream has no frame rate; pass --fps")
        collector = _AudioCollector(sample_rate) if astream is not None else None
        jpegs: list[bytes] = []
        size: tuple[int, int] | None = None
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
        last_jpeg: bytes | None = None
        last_time = 0.0
        t0: float | None = None
        n_decoded = 0

        def emit_before(t: float) -> None:
            # Output frame k shows the last frame at or before k / fps: every k with k / fps < t
            # (t: the next decoded frame's time) shows the current last frame.
            while last_jpeg is not None and len(jpegs) / out_fps < t - 1e-6:
                jpegs.append(last_jpeg)

        streams = [s for s in (vstream, astream) if s is not None]
        try:
            for packet in container.demux(*streams):
                for frame in packet.decode():
                    if packet.stream.type == "audio":
                        collector.add(frame)
                        continue
                    n_decoded += 1
                    if size is None:
                        size = resized_size(frame.height, frame.width, short_side)
                    t = float(frame.pts * frame.time_base) if frame.pts is not None else n_decoded / out_fps
                    if t0 is None:
                        t0 = t
                    t -= t0
                    if fps:
                        emit_before(t)
                    img = frame.to_ndarray(format="bgr24")
                    if img.shape[:2] != size:
                        img = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)
                    ok, buf = cv2.imencode(".jpg", img, params)
                    if not ok:
                        raise RuntimeError(f"{path}: JPEG encoding failed at frame {n_decoded}")
                    last_jpeg, last_time = buf.tobytes(), t
                    if not fps:
                        jpegs.append(last_jpeg)
        except av.FFmpegError as e:
            raise ValueError(f"{path}: decoding failed after {n_decoded} video frame(s) ({e})") from None
        if n_decoded == 0 or size is None:
            raise ValueError(f"{path}: no video frames could be decoded")
        truncated = _truncation(vstream, n_decoded, src_fps, last_time)
        duration = n_decoded / src_fps if src_fps else last_time
        if fps:
            # Cover the source's duration: frames up to the end of the last decoded frame's display.
            end = last_time + (1.0 / src_fps if src_fps else 0.0)
            emit_before(end)
            duration = end
        audio = collector.finish() if collector is not None else None
    finally:
        container.close()
    return {"jpegs": jpegs, "fps": out_fps, "height": size[0], "width": size[1], "audio": audio,
            "duration": duration, "truncated": truncated}


def _truncation(vstream, n_decoded: int, src_fps: float, last_time: float) -> str | None:
    """Return a note when fewer frames decoded than the stream's header announces (a file cut
    short, e.g. a faststart mp4 whose index is whole but whose data ends early), else None."""
    expected = int(vstream.frames or 0)
    if expected <= 0 and vstream.duration and vstream.time_base and src_fps:
        expected = int(round(float(vstream.duration * vstream.time_base) * src_fps))
    if expected <= 0 or expected - n_decoded <= max(1, expected // 100):
        return None
    total = f" of {expected / src_fps:.2f} s" if src_fps else ""
    return (f"truncated: decoded {n_decoded} of {expected} frames; decoding stopped at {last_time:.2f} s{total}, "
            f"the rest of the file is missing or unreadable")


def _check_truncated(vid: str, path: Path, out: dict, allow: bool, summary: PrepareSummary) -> None:
    """Refuse a video cut short (its note in `out["truncated"]`), or with `allow` record it as a
    warning: packing part of a video without a word would shift nothing but silently lose the
    segments past the cut."""
    note = out.get("truncated")
    if not note:
        return
    if not allow:
        raise ValueError(f"{path}: {note} (use --allow-truncated to pack the frames that decode)")
    summary.warnings.append(f"video {vid} ({path.name}): {note}; packed the {len(out['jpegs'])} frames that decode")


def decode_audio(path: str | os.PathLike, *, sample_rate: int = 24000) -> np.ndarray:
    """Return the first audio stream of a file as mono float32 `[n]` at `sample_rate`.

    Raises ValueError naming the file when it cannot be decoded or has no audio stream.
    """
    path = Path(path)
    container = _open(path)
    try:
        if not container.streams.audio:
            raise ValueError(f"{path}: has no audio stream")
        collector = _AudioCollector(sample_rate)
        try:
            for frame in container.decode(container.streams.audio[0]):
                collector.add(frame)
        except av.FFmpegError as e:
            raise ValueError(f"{path}: audio decoding failed ({e})") from None
        return collector.finish()
    finally:
        container.close()


def _check_paths(paths: Sequence[str | os.PathLike], what: str) -> list[tuple[str, Path]]:
    out: dict[str, Path] = {}
    for p in map(Path, paths):
        if not p.is_file():
            raise FileNotFoundError(f"{what} file not found: {p}")
        vid = check_video_id(p.stem)
        if vid in out:
            raise ValueError(f"{p}: video id {vid!r} (the file stem) is also the id of {out[vid]}")
        out[vid] = p
    if not out:
        raise ValueError(f"no {what} files given")
    return list(out.items())


def expand_inputs(inputs: Sequence[str | os.PathLike], suffixes: Sequence[str]) -> list[Path]:
    """Return the files among `inputs`, with folders replaced by their files ending in `suffixes` (sorted)."""
    files: list[Path] = []
    for p in map(Path, inputs):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in suffixes)
            if not found:
                raise FileNotFoundError(f"{p}: no files ending in {', '.join(suffixes)}")
            files.extend(found)
        else:
            files.append(p)
    return files


def probe(path: Path, sample_rate: int) -> tuple[int, int]:
    """Return (video frames, audio samples at `sample_rate`) of a file from its headers (0 where
    the file has no such stream); raises ValueError naming the file when it cannot be opened."""
    container = _open(path)
    try:
        frames = samples = 0
        duration = float(container.duration) / 1e6 if container.duration else 0.0
        if container.streams.video:
            v = container.streams.video[0]
            frames = int(v.frames) or int(round(duration * float(v.average_rate or 0)))
        if container.streams.audio:
            samples = int(round(duration * sample_rate))
        return frames, samples
    finally:
        container.close()


def _video_job(job):
    vid, path, short_side, quality, fps, sample_rate = job
    return vid, path, decode_video(path, short_side=short_side, quality=quality, fps=fps, sample_rate=sample_rate)


def prepare_video(video_paths: Sequence[str | os.PathLike], rgb_out: str | os.PathLike,
                  audio_out: str | os.PathLike | None, *, short_side: int = 256, quality: int = 90,
                  fps: float | None = None, sample_rate: int = 24000, allow_silent: bool = False,
                  allow_truncated: bool = False, workers: int = 1, resume: bool = True, show_progress: bool = True,
                  dry_run: bool = False) -> PrepareSummary | DryRun:
    """Decode video files into rgb.h5 (`rgb_out`) and audio.h5 (`audio_out`, None: skip audio).

    A truncated file is an error unless `allow_truncated` (module docstring). A video is
    skipped on a rerun when it is complete in both outputs. Both outputs are replaced
    only when every video is done; any error leaves the previous outputs intact.
    """
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    workers = check_workers(workers)
    summary = PrepareSummary("prepare video", out=str(rgb_out) + (f", {audio_out}" if audio_out else ""))
    with Timer() as t:
        items = _check_paths(video_paths, "video")
        if dry_run:
            done = complete_videos(rgb_out) if resume else set()
            if audio_out:
                done &= complete_videos(audio_out)
            todo = [(vid, p) for vid, p in items if vid not in done]
            counts = [probe(p, sample_rate)[0] for _, p in todo]

            def sample(i: int) -> tuple[int, int, int]:
                out = _video_job((*todo[i], short_side, quality, fps, sample_rate))[2]
                wave = out["audio"] if audio_out and out["audio"] is not None else np.zeros(0, np.float32)
                return sum(map(len, out["jpegs"])) + wave.nbytes, len(out["jpegs"]), len(wave)

            return estimate("prepare video", [rgb_out] + ([audio_out] if audio_out else []),
                            [(vid, n) for (vid, _), n in zip(todo, counts)], len(items) - len(todo), workers, sample)
        space = SpaceCheck(rgb_out, *([audio_out] if audio_out else []), resume=resume)
        rgb_w = RGBWriter(rgb_out, resume=resume)
        audio_w = AudioWriter(audio_out, resume=resume) if audio_out else None
        try:
            todo = [(vid, p, short_side, quality, fps, sample_rate) for vid, p in items
                    if not (rgb_w.has_video(vid) and (audio_w is None or audio_w.has_video(vid)))]
            summary.skipped = len(items) - len(todo)
            bar = progress(len(todo), "prepare video", show_progress)
            for vid, path, out in imap_workers(_video_job, todo, workers):
                _check_truncated(vid, path, out, allow_truncated, summary)
                wave = out["audio"]
                if audio_w is not None and wave is None:
                    if not allow_silent:
                        raise ValueError(f"{path}: video {vid} has no audio stream "
                                         f"(use --allow-silent to store silence, or --no-audio)")
                    wave = np.zeros(int(round(len(out["jpegs"]) / out["fps"] * sample_rate)), np.float32)
                    summary.warnings.append(f"video {vid} ({path.name}): no audio stream, stored silence")
                space.check(vid, (sum(map(len, out["jpegs"])), len(out["jpegs"])),
                            *([(wave.nbytes, 1)] if audio_w is not None else []))
                rgb_w.add_video(vid, out["jpegs"], fps=out["fps"], first_frame=1, height=out["height"],
                                width=out["width"], source=path.name)
                if audio_w is not None:
                    audio_w.add_video(vid, wave, sample_rate=sample_rate, source=path.name)
                    summary.samples += len(wave)
                    summary.bytes += wave.nbytes
                summary.videos += 1
                summary.frames += len(out["jpegs"])
                summary.bytes += sum(map(len, out["jpegs"]))
                bar.update(1)
            bar.close()
        except BaseException:
            rgb_w.abort()
            if audio_w is not None:
                audio_w.abort()
            raise
        rgb_w.close()
        if audio_w is not None:
            audio_w.close()
    summary.seconds = t.seconds
    return summary


def _audio_job(job):
    vid, path, sample_rate = job
    return vid, decode_audio(path, sample_rate=sample_rate)


def prepare_audio(audio_paths: Sequence[str | os.PathLike], audio_out: str | os.PathLike, *,
                  sample_rate: int = 24000, workers: int = 1, resume: bool = True,
                  show_progress: bool = True, dry_run: bool = False) -> PrepareSummary | DryRun:
    """Decode audio (or video) files into audio.h5 at `audio_out`: mono float32 at `sample_rate`.

    The video id is the file stem. A rerun skips complete videos; the output is replaced at the end.
    """
    workers = check_workers(workers)
    summary = PrepareSummary("prepare audio", out=str(audio_out))
    with Timer() as t:
        items = _check_paths(audio_paths, "audio")
        if dry_run:
            done = complete_videos(audio_out) if resume else set()
            todo = [(vid, p) for vid, p in items if vid not in done]
            counts = [probe(p, sample_rate)[1] for _, p in todo]

            def sample(i: int) -> tuple[int, int, int]:
                wave = _audio_job((*todo[i], sample_rate))[1]
                return wave.nbytes, 0, len(wave)

            return estimate("prepare audio", [audio_out], [(vid, n) for (vid, _), n in zip(todo, counts)],
                            len(items) - len(todo), workers, sample)
        space = SpaceCheck(audio_out, resume=resume)
        with AudioWriter(audio_out, resume=resume) as w:
            todo = [(vid, p, sample_rate) for vid, p in items if not w.has_video(vid)]
            summary.skipped = len(items) - len(todo)
            bar = progress(len(todo), "prepare audio", show_progress)
            for vid, wave in imap_workers(_audio_job, todo, workers):
                space.check(vid, (wave.nbytes, 1))
                w.add_video(vid, wave, sample_rate=sample_rate)
                summary.videos += 1
                summary.samples += len(wave)
                summary.bytes += wave.nbytes
                bar.update(1)
            bar.close()
    summary.seconds = t.seconds
    return summary


__all__ = ["decode_video", "decode_audio", "prepare_video", "prepare_audio", "expand_inputs", "resized_size",
           "VIDEO_SUFFIXES"]
