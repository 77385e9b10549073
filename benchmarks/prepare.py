"""Throughput of the `prepare` tools, in frames per second.

    python benchmarks/prepare.py [--frames 300] [--videos 2] [--size 256x456] [--workers 1 2]

Measures, on generated data in a temporary folder:
* pack frames: EPIC-style JPEG folders -> rgb.h5 (`prepare_frames`)
* pack tars: the same frames as EPIC ships them, one `<video>.tar` per video (members
  `./frame_0000000001.jpg`), read directly -> rgb.h5; must be no slower than packing the folders
* decode video: an mp4 (MPEG-4 Part 2 + AAC, PyAV-encoded) -> rgb.h5 + audio.h5 (`prepare_video`,
  short side 256, JPEG quality 90)
* compute flow: rgb.h5 -> flow.h5 (`prepare_flow`, stride 2, the method `auto` picks); frames/s
  counts RGB frames consumed.
Prints one table row per (step, workers).
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

from egodistill.data.prepare.flow import prepare_flow, resolve_method
from egodistill.data.prepare.frames import prepare_frames
from egodistill.data.prepare.video import prepare_video


def _frames(rng: np.random.Generator, n: int, h: int, w: int) -> list[np.ndarray]:
    """A textured scene panning right with noise: realistic JPEG sizes and real motion."""
    base = cv2.GaussianBlur(rng.uniform(0, 255, (h, w + 2 * n, 3)).astype(np.float32), (0, 0), 3)
    base = cv2.normalize(base, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    out = []
    for i in range(n):
        f = base[:, 2 * i:2 * i + w].astype(np.int16) + rng.integers(-6, 7, (h, w, 3))
        out.append(np.clip(f, 0, 255).astype(np.uint8))
    return out


def _write_folders(root: Path, videos: list[list[np.ndarray]]) -> None:
    for v, frames in enumerate(videos):
        d = root / f"P01_{v + 1:02d}"
        d.mkdir(parents=True)
        for i, f in enumerate(frames):
            cv2.imwrite(str(d / f"frame_{i + 1:010d}.jpg"), f, [cv2.IMWRITE_JPEG_QUALITY, 90])


def _write_tars(folders: Path, tars: Path) -> None:
    import tarfile

    tars.mkdir()
    for d in sorted(folders.iterdir()):
        with tarfile.open(tars / f"{d.name}.tar", "w", format=tarfile.GNU_FORMAT) as tar:  # as GNU tar writes EPIC's
            tar.add(d, arcname=".")


def _write_mp4(path: Path, frames: list[np.ndarray], fps: int = 30, sr: int = 48000) -> None:
    h, w = frames[0].shape[:2]
    c = av.open(str(path), "w")
    vs = c.add_stream("mpeg4", rate=fps)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    vs.bit_rate = 4_000_000
    a = c.add_stream("aac", rate=sr)
    a.layout = "stereo"
    for f in frames:
        for p in vs.encode(av.VideoFrame.from_ndarray(f, format="bgr24")):
            c.mux(p)
    for p in vs.encode():
        c.mux(p)
    n = int(len(frames) / fps * sr)
    wave = (0.1 * np.random.default_rng(0).standard_normal((2, n))).astype(np.float32)
    af = av.AudioFrame.from_ndarray(wave, format="fltp", layout="stereo")
    af.sample_rate = sr
    for p in a.encode(af):
        c.mux(p)
    for p in a.encode():
        c.mux(p)
    c.close()


# --steps name -> the start of the step's row name
STEPS = {"frames": "pack frames", "tars": "pack tars", "video": "decode video", "flow": "compute flow"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=300, help="frames per video")
    ap.add_argument("--videos", type=int, default=2)
    ap.add_argument("--size", default="256x456", help="HxW of the frames (EPIC's released frames: 256x456)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", nargs="+", default=list(STEPS), choices=list(STEPS),
                    help="which steps to time (default: all; flow packs its rgb.h5 untimed when frames is not timed), e.g. --steps frames tars")
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.lower().split("x"))
    rng = np.random.default_rng(0)
    videos = [_frames(rng, args.frames, h, w) for _ in range(args.videos)]
    total = args.frames * args.videos
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write_folders(root / "frames", videos)
        _write_tars(root / "frames", root / "tars")
        mp4s = []
        for v, frames in enumerate(videos if "video" in args.steps else []):
            mp4s.append(root / f"P02_{v + 1:02d}.mp4")
            _write_mp4(mp4s[-1], frames)
        for workers in args.workers:
            for step, fn in (
                ("pack frames", lambda o: prepare_frames(root / "frames", o / "rgb.h5", workers=workers,
                                                        show_progress=False)),
                ("pack tars", lambda o: prepare_frames(root / "tars", o / "tar_rgb.h5", workers=workers,
                                                      show_progress=False)),
                ("decode video", lambda o: prepare_video(mp4s, o / "v_rgb.h5", o / "v_audio.h5", workers=workers,
                                                         show_progress=False)),
                (f"compute flow ({resolve_method('auto')})",
                 lambda o: prepare_flow(o / "rgb.h5", o / "flow.h5", workers=workers,
                                        show_progress=False)),
            ):
                if not any(step.startswith(STEPS[k]) for k in args.steps):
                    continue
                out = root / f"run{workers}"
                out.mkdir(exist_ok=True)
                for name in ("flow.h5", "v_rgb.h5", "v_audio.h5", "tar_rgb.h5"):
                    (out / name).unlink(missing_ok=True)
                if step == "pack frames":
                    (out / "rgb.h5").unlink(missing_ok=True)
                elif step.startswith(STEPS["flow"]) and not (out / "rgb.h5").exists():
                    # flow timed without the frames step: pack its input first, untimed
                    prepare_frames(root / "frames", out / "rgb.h5", show_progress=False)
                t = time.perf_counter()
                summary = fn(out)
                dt = time.perf_counter() - t
                assert summary.videos == args.videos, summary.line()
                rows.append((step, workers, total, dt, total / dt))
    print(f"prepare throughput: {args.videos} videos x {args.frames} frames of {w}x{h}, "
          f"{platform.processor() or platform.machine()}, OpenCV {cv2.__version__}, PyAV {av.__version__}")
    print(f"{'step':<22} {'workers':>7} {'frames':>7} {'seconds':>8} {'frames/s':>9}")
    for step, workers, n, dt, fps in rows:
        print(f"{step:<22} {workers:>7} {n:>7} {dt:>8.2f} {fps:>9.1f}")


if __name__ == "__main__":
    main()
