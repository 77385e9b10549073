"""Prediction on video files: decode with PyAV, take the run's test views, report the top classes.

The views are the data package's (`test_views`, `crop_resize`, `normalize_frames`), so a file is
seen exactly as an evaluation sample of the run's RGB store would be: K clips x C crops over the
whole video, logits averaged over the views. Frames are sampled at the file's own frame rate.

A `Predictor` (the run's PyTorch model, `TorchPredictor`, or an exported file,
`engine.export.OnnxPredictor`) maps such views to logits; its `ClipSpec` says how to sample and
size them. Long recordings are predicted window by window in bounded memory by
`engine.timeline`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from egodistill.config import Config, DataConfig
from egodistill.data.records import DatasetInfo
from egodistill.data.views import IMAGENET_MEAN, IMAGENET_STD, crop_resize, normalize_uint8, test_views
from egodistill.engine.inputs import average_views, model_input
from egodistill.engine.metrics import epic_action_scores, stable_topk
from egodistill.engine.stream import VideoReader


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to turn video frames into a model's input and its logits into names.

    `data`: the test-view sampling (`sampler`, `num_frames`, `stride`, `size`, `test_clips`,
    `test_crops`); `frame_step`: the model reads every `frame_step`-th frame of a view; `mean`,
    `std`: per-channel normalisation of RGB values in [0, 1]; `info`: class names per head.
    """

    data: DataConfig
    frame_step: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    info: DatasetInfo

    @classmethod
    def from_run(cls, cfg: Config, info: DatasetInfo) -> "ClipSpec":
        """Return the spec of an RGB run (its config's test views, ImageNet normalisation)."""
        if cfg.model.modality != "rgb":
            raise ValueError(f"predict reads RGB video files, but this run's model reads '{cfg.model.modality}'")
        return cls(cfg.data, int(cfg.model.frame_step), IMAGENET_MEAN, IMAGENET_STD, info)

    @property
    def input_frames(self) -> int:
        """Frames the model itself reads: `len(range(0, num_frames, frame_step))`."""
        return len(range(0, self.data.num_frames, self.frame_step))


class Predictor(Protocol):
    """Clips in, view-averaged logits out: `predictor(clips uint8 [B, V, T, 3, S, S])` ->
    {head: float32 Tensor [B, classes]} on the CPU; `predictor.spec` is its `ClipSpec`."""

    spec: ClipSpec

    def __call__(self, clips: Tensor) -> dict[str, Tensor]: ...


class TorchPredictor:
    """A run's PyTorch model as a `Predictor` on `device`."""

    def __init__(self, cfg: Config, model: torch.nn.Module, info: DatasetInfo, device: str | torch.device = "cpu"):
        self.spec = ClipSpec.from_run(cfg, info)
        self.model_cfg = cfg.model
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)

    @torch.no_grad()
    def __call__(self, clips: Tensor) -> dict[str, Tensor]:
        logits = self.model(model_input({"rgb": clips.to(self.device)}, self.model_cfg))
        return {h: z.cpu() for h, z in average_views(logits, clips.shape[0]).items()}


def resolve_device(name: str) -> torch.device:
    """Return the device `--device` names: auto (CUDA when available), cpu, cuda, cuda:N."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: no CUDA device is available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: there are {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise ValueError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N")
    return device


def load_predictor(*, run: str | os.PathLike | None = None, model: str | os.PathLike | None = None,
                   device: str = "auto", weights: str = "best") -> Predictor:
    """Return the `Predictor` of a run folder (PyTorch; `weights` best or last) or of an exported
    file (`model`, with its sidecar; ONNX runs in ONNX Runtime) on `device`."""
    dev = resolve_device(device)
    if model is not None:
        from egodistill.engine.export import load_exported

        return load_exported(model, str(dev))
    from egodistill.engine.calibration import apply_run_calibration
    from egodistill.engine.checkpoint import LAST_DIR, WEIGHTS_FILE, load_run

    path = Path(run) / LAST_DIR / WEIGHTS_FILE if weights == "last" else None
    cfg, net, info = load_run(run, weights=path)
    apply_run_calibration(net, run, path)  # calibrated probabilities when the run has them
    return TorchPredictor(cfg, net, info, dev)


def decode_frames(path: str | os.PathLike, short_side: int = 256) -> tuple[list[np.ndarray], float]:
    """Return (RGB uint8 frames [H, W, 3], frames per second) of a video file's first video stream,
    each frame resized so its short side is `short_side` (never upscaled), upright.

    Raises ValueError naming the file when it cannot be opened, has no video stream or no frame
    decodes; a file that stops decoding part way gives the frames that decoded (see
    `decode_video` for the warning)."""
    frames, fps, _ = decode_video(path, short_side)
    return frames, fps


def decode_video(path: str | os.PathLike, short_side: int = 256) -> tuple[list[np.ndarray], float, str | None]:
    """Return `decode_frames`' frames and rate, and the reader's warning (None, or where a cut-off
    file stopped decoding)."""
    reader = VideoReader(Path(path), short_side)
    frames = [img for _, img in reader]
    return frames, reader.fps, reader.warning


def clip_views(frames: list[np.ndarray], data: DataConfig) -> Tensor:
    """Return the `data.test_clips x data.test_crops` test views of `frames` (one clip or one
    window) as uint8 [V, T, 3, S, S] (a channels-first view of channels-last memory)."""
    views = test_views(len(frames), data, frames[0].shape[:2])
    out = np.empty((len(views), data.num_frames, data.size, data.size, 3), dtype=np.uint8)
    for i, v in enumerate(views):
        crop_resize([frames[int(j)] for j in v.frames], v, data.size, out=out[i])
    return torch.from_numpy(out).permute(0, 1, 4, 2, 3)


def video_views(frames: list[np.ndarray], cfg: Config) -> Tensor:
    """Return the run's K x C test views of a whole video as float32 [V, T, 3, S, S] (ImageNet-normalised)."""
    return normalize_uint8(clip_views(frames, cfg.data), IMAGENET_MEAN, IMAGENET_STD)


def check_finite(logits: dict[str, Tensor], what: str) -> None:
    """Raise ValueError naming `what` when a head's logits hold NaN or infinity."""
    if not all(bool(torch.isfinite(z).all()) for z in logits.values()):
        raise ValueError(f"{what}: the model gives NaN or infinite logits, so there is no prediction "
                         f"(were the run's weights saved from a diverged training?)")


def top_classes(logits: dict[str, Tensor], info: DatasetInfo, k: int = 5) -> dict[str, list[dict[str, Any]]]:
    """Return, for one sample's view-averaged logits {head: [C]}, the top-`k` classes of every head
    as [{"class", "name", "prob"}] and, for EPIC, the top-`k` actions scored as the challenge does
    (p(verb) * p(noun)) as [{"verb", "noun", "name", "prob"}]."""
    out: dict[str, list[dict[str, Any]]] = {}
    probs = {h: z.double().softmax(-1).unsqueeze(0) for h, z in logits.items() if h in info.heads}
    for h, p in probs.items():
        values, ids = stable_topk(p, min(k, p.shape[1]))
        out[h] = [{"class": int(c), "name": info.heads[h][int(c)], "prob": float(v)}
                  for v, c in zip(values[0].tolist(), ids[0].tolist())]
    if info.action_heads is not None and all(h in probs for h in info.action_heads):
        vh, nh = info.action_heads
        scores, action_ids = epic_action_scores(probs[vh], probs[nh])
        out["action"] = [
            {"verb": a // 1000, "noun": a % 1000,
             "name": f"{info.heads[vh][a // 1000]} {info.heads[nh][a % 1000]}", "prob": float(s)}
            for s, a in zip(scores[0, :k].tolist(), action_ids[0, :k].tolist())
        ]
    return out


def predict_videos(paths: list[str | os.PathLike], cfg: Config, model: torch.nn.Module, info: DatasetInfo, *,
                   k: int = 5, batch_size: int = 4, device: str | torch.device = "cpu",
                   short_side: int = 256) -> list[dict[str, Any]]:
    """Return one record per video: {"video", "frames", "fps", and top_classes(...)}; videos are
    decoded one at a time and run `batch_size` at a time."""
    return predict_clips(paths, TorchPredictor(cfg, model, info, device), k=k, batch_size=batch_size,
                         short_side=short_side)


def predict_clips(paths: list[str | os.PathLike], predictor: Predictor, *, k: int = 5, batch_size: int = 4,
                  short_side: int = 256) -> list[dict[str, Any]]:
    """Return one record per video (each a whole clip, its test views averaged): {"video",
    "frames", "fps", [ "warning" ], and top_classes(...)}; `batch_size` videos per forward pass."""
    spec = predictor.spec
    results: list[dict[str, Any]] = []
    pending: list[tuple[dict[str, Any], Tensor]] = []

    def flush() -> None:
        if not pending:
            return
        logits = predictor(torch.stack([p[1] for p in pending]))  # {head: [B, C]}
        for i, (record, _) in enumerate(pending):
            row = {h: z[i] for h, z in logits.items()}
            check_finite(row, record["video"])
            record.update(top_classes(row, spec.info, k))
            results.append(record)
        pending.clear()

    for path in paths:
        frames, fps, warning = decode_video(path, short_side)
        record: dict[str, Any] = {"video": str(path), "frames": len(frames), "fps": fps}
        if warning:
            record["warning"] = warning
        pending.append((record, clip_views(frames, spec.data)))
        del frames
        if len(pending) >= max(1, batch_size):
            flush()
    flush()
    return results


def format_prediction(record: dict[str, Any]) -> str:
    """Return a short text block: the video, then one line per head of `name prob` pairs."""
    lines = [f"{record['video']} ({record['frames']} frames, {record['fps']:.3g} fps)"]
    for key, items in record.items():
        if isinstance(items, list):
            lines.append(f"  {key:<7} " + " | ".join(f"{it['name']} {it['prob']:.3f}" for it in items))
    return "\n".join(lines)


def format_predictions_side_by_side(records: dict[str, dict[str, Any]]) -> str:
    """Return the top-k of several models on the same video as one text table: per head, a row
    per rank with each model's `name prob` in its own column (`records`: {model: record})."""
    names = list(records)
    first = records[names[0]]
    heads = [key for key, items in first.items() if isinstance(items, list)]
    cells = [["head", "rank", *names]]
    for head in heads:
        for rank in range(len(first[head])):
            row = [head if rank == 0 else "", str(rank + 1)]
            for name in names:
                items = records[name].get(head, [])
                row.append(f"{items[rank]['name']} {items[rank]['prob']:.3f}" if rank < len(items) else "")
            cells.append(row)
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = [f"{first['video']} ({first['frames']} frames, {first['fps']:.3g} fps)"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)
