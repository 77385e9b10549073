"""Prediction on video files: decode with PyAV, take the run's test views, report the top classes.

The views are the data package's (`test_views`, `crop_resize`, `normalize_frames`), so a file is
seen exactly as an evaluation sample of the run's RGB store would be: K clips x C crops over the
whole video, logits averaged over the views. Frames are sampled at the file's own frame rate.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import torch
from torch import Tensor

from egodistill.config import Config
from egodistill.data.records import DatasetInfo
from egodistill.data.views import IMAGENET_MEAN, IMAGENET_STD, crop_resize, normalize_frames, test_views
from egodistill.engine.inputs import average_views, model_input
from egodistill.engine.metrics import epic_action_scores, stable_topk


def decode_frames(path: str | os.PathLike, short_side: int = 256) -> tuple[list[np.ndarray], float]:
    """Return (RGB uint8 frames [H, W, 3], frames per second) of a video file's first video stream,
    each frame resized so its short side is `short_side` (never upscaled).

    Raises ValueError naming the file when it cannot be opened, has no video stream or no frame
    decodes."""
    from egodistill.data.prepare.video import resized_size

    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a video file")
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {path}")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as e:
        raise ValueError(f"{path}: cannot be opened as a video ({e})") from None
    frames: list[np.ndarray] = []
    try:
        if not container.streams.video:
            raise ValueError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        size = None
        try:
            for frame in container.decode(stream):
                img = frame.to_ndarray(format="rgb24")  # [H, W, 3]
                if size is None:
                    size = resized_size(img.shape[0], img.shape[1], short_side)
                if img.shape[:2] != size:
                    img = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)
                frames.append(img)
        except av.FFmpegError as e:
            raise ValueError(f"{path}: decoding failed after {len(frames)} frame(s) ({e})") from None
    finally:
        container.close()
    if not frames:
        raise ValueError(f"{path}: no video frame could be decoded")
    return frames, fps


def video_views(frames: list[np.ndarray], cfg: Config) -> Tensor:
    """Return the run's K x C test views of a whole video as float32 [V, T, 3, S, S] (ImageNet-normalised)."""
    views = test_views(len(frames), cfg.data, frames[0].shape[:2])
    out = []
    for v in views:
        clip = crop_resize([frames[int(i)] for i in v.frames], v, cfg.data.size)  # [T, S, S, 3] uint8
        out.append(normalize_frames(clip, IMAGENET_MEAN, IMAGENET_STD))  # [T, 3, S, S]
    return torch.stack(out)


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


@torch.no_grad()
def predict_videos(paths: list[str | os.PathLike], cfg: Config, model: torch.nn.Module, info: DatasetInfo, *,
                   k: int = 5, batch_size: int = 4, device: str | torch.device = "cpu",
                   short_side: int = 256) -> list[dict[str, Any]]:
    """Return one record per video: {"video", "frames", "fps", and top_classes(...)}; videos are
    decoded one at a time and run `batch_size` at a time."""
    if cfg.model.modality != "rgb":
        raise ValueError(f"predict reads RGB video files, but this run's model reads '{cfg.model.modality}'")
    model.eval().to(device)
    results: list[dict[str, Any]] = []
    pending: list[tuple[str, int, float, Tensor]] = []

    def flush() -> None:
        if not pending:
            return
        batch = {"rgb": torch.stack([p[3] for p in pending]).to(device)}  # [B, V, T, 3, S, S]
        logits = average_views(model(model_input(batch, cfg.model)), len(pending))  # {head: [B, C]}
        for i, (name, n, fps, _) in enumerate(pending):
            if not all(bool(torch.isfinite(z[i]).all()) for z in logits.values()):
                raise ValueError(f"{name}: the model gives NaN or infinite logits, so there is no prediction "
                                 f"(were the run's weights saved from a diverged training?)")
            record = {"video": name, "frames": n, "fps": fps}
            record.update(top_classes({h: z[i].cpu() for h, z in logits.items()}, info, k))
            results.append(record)
        pending.clear()

    for path in paths:
        frames, fps = decode_frames(path, short_side)
        pending.append((str(path), len(frames), fps, video_views(frames, cfg)))
        if len(pending) >= batch_size:
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
