"""Training-step throughput: clips per second of one optimiser step (forward, loss, backward,
gradient clipping, AdamW) for Video Swin-T 16x224 and the small presets.

    python benchmarks/train_step.py                       # Swin-T + small presets, batch 2
    python benchmarks/train_step.py --presets swin_nano --batch 8 --steps 5

The step is the trainer's (`egodistill.engine.trainer`): the same model inputs, supervised
objective, Accelerate autocast / backward / clipping and AdamW parameter groups, on random
clips already in memory, so data loading is excluded (see benchmarks/data_pipeline.py for that).
Heads are EPIC-100's (97 verbs, 300 nouns). Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import platform
import time

import torch

from egodistill.config import Config
from egodistill.engine.objectives import SupervisedObjective
from egodistill.engine.trainer import build_optimizer, make_accelerator
from egodistill.engine.inputs import model_input
from egodistill.models import build_model

# (preset, frames, size): the paper's Swin-T setting and the CPU-sized presets
SETTINGS = {
    "swin_t": (16, 224),
    "swin_micro": (8, 64),
    "swin_nano": (4, 32),
}
HEADS = {"verb": 97, "noun": 300}


def time_steps(preset: str, frames: int, size: int, batch: int, steps: int, precision: str) -> dict:
    """Return {"s_per_step", "clips_per_s"} of `steps` timed optimiser steps after one warm-up step."""
    cfg = Config()
    cfg.model.arch = preset
    cfg.train.precision = precision
    accelerator = make_accelerator(cfg)
    model = build_model(cfg.model, HEADS, 3)
    optimizer = build_optimizer(model, cfg.optim)
    model, optimizer = accelerator.prepare(model, optimizer)
    objective = SupervisedObjective()
    device = accelerator.device
    batch_data = {
        "rgb": torch.randn(batch, 1, frames, 3, size, size, device=device),  # [B, V=1, T, C, S, S]
        "labels": {h: torch.randint(0, n, (batch,), device=device) for h, n in HEADS.items()},
    }

    def step() -> None:
        with accelerator.autocast():
            loss, _ = objective(model(model_input(batch_data, cfg.model)), batch_data)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    step()  # warm-up: allocations, kernel selection
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / steps
    return {"s_per_step": seconds, "clips_per_s": batch / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per preset (after one warm-up)")
    parser.add_argument("--precision", default="no", choices=["no", "fp16", "bf16"])
    args = parser.parse_args()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    print(f"device: {device}; torch {torch.__version__}; batch {args.batch}; precision {args.precision}\n")
    print("| preset | frames x size | s / step | clips / s |")
    print("|---|---|---:|---:|")
    for preset in args.presets:
        frames, size = SETTINGS[preset]
        r = time_steps(preset, frames, size, args.batch, args.steps, args.precision)
        print(f"| {preset} | {frames}x{size} | {r['s_per_step']:.3f} | {r['clips_per_s']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
