"""Test helpers: small video files written with PyAV, and run folders of untrained RGB models.

    from media import write_video, make_run
    write_video(path, seconds=3, fps=10, size=(36, 48))   # a moving bar, libx264 mp4
    make_run(tmp_path / "run", arch="cnn3d_nano")           # config.yaml, info.json, model.safetensors

A file with no video stream: `test_hostile.wav_file`.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

VERBS = ["take", "put", "open", "close"]
NOUNS = ["cup", "plate", "knife", "pan", "lid"]


def frame_image(i: int, height: int, width: int) -> np.ndarray:
    """Return frame `i` of the test pattern: a bright bar moving right over a gradient, RGB uint8."""
    img = np.zeros((height, width, 3), dtype=np.uint8)
    img[..., 0] = np.linspace(0, 200, width, dtype=np.uint8)[None, :]
    img[..., 1] = np.linspace(0, 120, height, dtype=np.uint8)[:, None]
    x = (3 * i) % max(1, width - 4)
    img[:, x:x + 4] = (250, 250, 40)
    return img


def write_video(path: Path, *, seconds: float | None = None, frames: int | None = None, fps: int = 10,
                size: tuple[int, int] = (36, 48), codec: str = "libx264", times: list[float] | None = None,
                rotation: int = 0, faststart: bool = False) -> Path:
    """Write a test video; `times`: explicit frame times in seconds (a variable frame rate, mkv);
    `size`: (height, width); `rotation`: display-matrix rotation (degrees counterclockwise);
    `faststart`: mp4 index before the data (a file cut short still opens and announces all frames)."""
    h, w = size
    container = av.open(str(path), "w", options={"movflags": "faststart"} if faststart else None)
    if times is not None:
        stream = container.add_stream(codec, rate=1000)
        stream.codec_context.time_base = Fraction(1, 1000)
    else:
        stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height = w, h
    stream.pix_fmt = {"ffv1": "yuv444p", "mjpeg": "yuvj444p"}.get(codec, "yuv420p")
    if rotation:
        stream.set_display_rotation(rotation)
    n = len(times) if times is not None else (frames if frames is not None else int(round(seconds * fps)))
    for i in range(n):
        frame = av.VideoFrame.from_ndarray(frame_image(i, h, w), format="rgb24")
        if times is not None:
            frame.pts = int(round(times[i] * 1000))
            frame.time_base = Fraction(1, 1000)
        container.mux(stream.encode(frame))
    container.mux(stream.encode())
    container.close()
    return path


def make_run(run_dir: Path, *, arch: str = "cnn3d_nano", frames: int = 4, size: int = 32, stride: int = 1,
             test_clips: int = 2, test_crops: int = 1, frame_step: int = 1, seed: int = 0,
             modality: str = "rgb") -> Path:
    """Write a run folder of an untrained (seeded) model with EPIC-style verb and noun heads."""
    import torch

    from egodistill.config import config_from_dict
    from egodistill.data.records import DatasetInfo
    from egodistill.engine.checkpoint import WEIGHTS_FILE, build_run_model, save_run_files, save_weights

    cfg = config_from_dict({
        "run_dir": str(run_dir),
        "model": {"arch": arch, "frame_step": frame_step, "drop_path": 0.0, "modality": modality},
        "data": {"num_frames": frames, "size": size, "stride": stride, "test_clips": test_clips,
                 "test_crops": test_crops},
    })
    info = DatasetInfo(name="epic100", heads={"verb": VERBS, "noun": NOUNS}, action_heads=("verb", "noun"))
    torch.manual_seed(seed)
    model = build_run_model(cfg, info)
    with torch.no_grad():  # a little spread in the heads, so that the classes are told apart
        for p in model.head.parameters():
            p.mul_(20.0)
    save_run_files(run_dir, cfg, info)
    save_weights(model, Path(run_dir) / WEIGHTS_FILE)
    return Path(run_dir)
