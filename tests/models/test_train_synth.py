"""The models train on the tiny synthetic dataset: a few optimiser steps on real batches (RGB
clips through Video Swin, layouts through STLT, from the dataset and collate) lower the loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from egodistill.data.dataset import build_dataset, collate
from egodistill.engine.inputs import model_input
from egodistill.models import build_model


def _fit(model, inputs, labels: dict[str, torch.Tensor], steps: int) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        out = model(inputs)
        loss = sum(F.cross_entropy(out[h], y) for h, y in labels.items())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _batch(cfg, modality: str):
    cfg.model.modality = modality
    cfg.data.num_frames, cfg.data.stride, cfg.data.max_boxes, cfg.data.size = 4, 2, 6, 32
    ds = build_dataset(cfg, cfg.data.train_split, train=True)
    batch = collate([ds[i] for i in range(min(len(ds), 8))])
    return batch, {h: y for h, y in batch["labels"].items()}


def test_swin_nano_trains_on_synthetic_rgb(synth_config):
    torch.manual_seed(0)
    batch, labels = _batch(synth_config, "rgb")
    clips = model_input(batch, synth_config.model)  # [B*V, T, 3, S, S] float, V = 1 in training
    assert clips.shape[1:] == (4, 3, 32, 32)
    heads = {h: int(y.max()) + 1 for h, y in labels.items()}
    synth_config.model.arch, synth_config.model.drop_path = "swin_nano", 0.0
    model = build_model(synth_config.model, heads, 3)
    losses = _fit(model, clips, labels, steps=20)
    assert sum(losses[-3:]) / 3 < 0.6 * losses[0], losses


def test_stlt_nano_trains_on_synthetic_layouts(synth_config):
    torch.manual_seed(0)
    batch, labels = _batch(synth_config, "layout")
    layout = {k: v.flatten(0, 1) for k, v in batch["layout"].items()}
    assert layout["mask"].any() and layout["boxes"].shape[-1] == 4
    heads = {h: int(y.max()) + 1 for h, y in labels.items()}
    synth_config.model.arch = "stlt_nano"
    model = build_model(synth_config.model, heads, 3)
    losses = _fit(model, layout, labels, steps=40)
    assert sum(losses[-3:]) / 3 < 0.7 * losses[0], losses
