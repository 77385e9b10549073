"""What a model reads from a batch: its modality, views folded into the batch, frames subsampled.

Every consumer of models (trainer, evaluation, prediction, teachers) prepares inputs here, so a
student with fewer frames (`model.frame_step`) reads the same frames everywhere.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from egodistill.config import Config, ModelConfig
from egodistill.data.modalities import MODALITIES, DeviceClips


def _fold(x: Tensor, frame_step: int, what: str) -> Tensor:
    """[B, V, T, ...] -> [B*V, T', ...] with T' = len(range(0, T, frame_step))."""
    if x.ndim < 3:
        raise ValueError(f"batch['{what}'] must be [batch, views, frames, ...], got shape {tuple(x.shape)}")
    b, v = x.shape[:2]
    x = x.reshape(b * v, *x.shape[2:])
    if frame_step > 1:
        x = x[:, ::frame_step]
    return x


def model_input(batch: dict[str, Any], model_cfg: ModelConfig) -> Tensor | dict[str, Tensor]:
    """Return the input of the model described by `model_cfg`: `batch[modality]` [B, V, T, C, H, W]
    -> [B*V, T', C, H, W] (sample-major: rows b*V .. b*V + V - 1 are sample b's views), T' the
    frames T[::frame_step], as float32 (uint8 frames normalised by their modality's `normalize`);
    a layout dict {key: [B, V, T, N, ...]} -> {key: [B*V, T', N, ...]}."""
    name = model_cfg.modality
    if name not in batch:
        have = [k for k in batch if k not in ("labels", "id", "index", "views")]
        raise KeyError(f"the batch has no '{name}' input for a model of modality '{name}' (batch inputs: {have})")
    x = batch[name]
    step = int(model_cfg.frame_step)
    if step < 1:
        raise ValueError(f"model.frame_step must be >= 1, got {step}")
    if isinstance(x, dict):
        return {k: _fold(t, step, f"{name}.{k}") for k, t in x.items()}
    x = _fold(x, step, name)
    # uint8 frames are normalised here, on the batch's device (after a 4x smaller copy).
    return MODALITIES[name].normalize(x) if name in MODALITIES else x


def example_input(cfg: Config, frames: int, size: int, batch: int) -> Tensor | dict[str, Tensor]:
    """Return a random input for `cfg.model` (its modality's: clips [batch, frames, C, size, size],
    or a layout dict with `data.max_boxes` boxes per frame)."""
    return MODALITIES[cfg.model.modality].example_input(cfg, frames, size, batch)


def to_device(batch: Any, device: torch.device | str, non_blocking: bool = False) -> Any:
    """Return `batch` with every tensor (nested in dicts / lists) moved to `device`; clips left to
    the device (data.decode=gpu: JPEGs, audio waveforms) finished there."""
    if isinstance(batch, DeviceClips):
        return batch.decode(device)
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, dict):
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, list) and batch and isinstance(batch[0], Tensor):
        return [to_device(v, device, non_blocking) for v in batch]
    return batch


def average_views(logits: dict[str, Tensor], samples: int) -> dict[str, Tensor]:
    """Return {head: [B, C]}: the mean over views of logits {head: [B*V, C]} (float32)."""
    out = {}
    for h, z in logits.items():
        if z.shape[0] % samples:
            raise ValueError(f"head '{h}': {z.shape[0]} logit rows are not a whole number of views of {samples} samples")
        out[h] = z.float().view(samples, -1, z.shape[-1]).mean(1)
    return out
