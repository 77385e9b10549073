"""What one GPU does with this project: loader clips/s, Swin-T train and distill steps, memory, MFU.

    python benchmarks/gpu.py                  # on a CUDA machine: one Markdown table (~5 minutes)
    python benchmarks/gpu.py --cpu-smoke      # every row at tiny sizes on the CPU (the code, not numbers)

Rows:
* loader: rgb+flow+audio batches of 16-frame 224x224 training views from 456x256 JPEG stores
  (benchmarks/data_pipeline.py's), through `build_loader` with N worker processes decoding on
  the CPU (`data.decode=cpu`), and with `data.decode=gpu` (the workers read JPEGs and waveforms;
  the JPEGs are decoded, cropped and resized and the audio spectrograms computed on the device
  in `to_device`), clips/s with the batch on the device;
* Swin-T 16x224 optimiser steps on random clips already on the device (the trainer's step:
  autocast as Accelerate sets it, backward, clipping, AdamW with the trainer's groups), in bf16 and fp32: supervised (train), online
  distillation (three frozen Swin-T teachers on rgb, flow and audio run forward each step) and
  cached distillation (the teachers' logits replayed): clips/s, peak memory, and model FLOP
  utilisation = (FLOPs of the step / seconds) / the device's peak. A step's FLOPs are 3x the
  student's forward (forward + backward) plus each teacher's forward, counted with
  `egodistill.models.cost.count_flops` (2 FLOPs a multiply-add).

On a machine without CUDA (and without --cpu-smoke) it prints one line and exits 0.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_pipeline import _config, build_stores  # noqa: E402  (the same stores as the CPU benchmark)

from egodistill.config import Config  # noqa: E402
from egodistill.data.dataset import MultimodalDataset, build_loader, collate  # noqa: E402
from egodistill.data.loaders import make_loader  # noqa: E402
from egodistill.distill.loss import distill_loss  # noqa: E402
from egodistill.engine.inputs import to_device  # noqa: E402
from egodistill.engine.objectives import SupervisedObjective  # noqa: E402
from egodistill.engine.trainer import build_optimizer  # noqa: E402
from egodistill.models import build_model  # noqa: E402
from egodistill.models.cost import count_flops  # noqa: E402

HEADS = {"verb": 97, "noun": 300}  # EPIC-100
MODALITIES = ("rgb", "flow", "audio")

# Dense peak TFLOP/s (bf16 tensor cores, fp32 without TF32) by a substring of the device name;
# from the vendors' data sheets (SXM parts). --peak-tflops / --peak-tflops-fp32 override.
PEAKS = {
    "H200": (989.0, 67.0),
    "H100": (989.0, 67.0),
    "A100": (312.0, 19.5),
    "L40S": (362.0, 91.6),
    "L4": (121.0, 30.3),
    "A10": (125.0, 31.2),
}


def device_peak(name: str, bf16: float | None, fp32: float | None) -> tuple[float | None, float | None]:
    """Return the device's (bf16, fp32) peak TFLOP/s: the overrides, else the table's, else None."""
    known = next((v for k, v in PEAKS.items() if k in name), (None, None))
    return (bf16 if bf16 else known[0]), (fp32 if fp32 else known[1])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_memory_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


# --------------------------------------------------------------------------------------------
# Loader rows
# --------------------------------------------------------------------------------------------


def loader_rate(cfg: Config, samples, workers: int, decode: str, device: torch.device, batch: int, batches: int) -> float:
    """Return clips/s of rgb+flow+audio batches on `device` with `workers` workers and `decode`."""
    cfg.data.decode, cfg.train.workers = decode, workers
    ds = MultimodalDataset(cfg, samples, list(MODALITIES), train=True)
    order = torch.utils.data.Subset(ds, [i % len(samples) for i in range(batch * batches)])
    if device.type == "cuda":
        loader = build_loader(order, cfg, train=False, batch_size=batch, shuffle=False)
    else:  # --cpu-smoke: data.decode=gpu decodes on the CPU (build_loader would refuse it without CUDA)
        loader = make_loader(cfg.train.loader, order, batch_size=batch, sampler=None, workers=workers,
                             collate_fn=collate, pin_memory=False)
    got, t = 0, time.perf_counter()
    for b in loader:
        on_device = to_device(b, device, non_blocking=True)
        got += on_device["rgb"].shape[0]
    _sync(device)
    return got / (time.perf_counter() - t)


# --------------------------------------------------------------------------------------------
# Step rows
# --------------------------------------------------------------------------------------------


def _model(arch: str) -> torch.nn.Module:
    cfg = Config()
    cfg.model.arch = arch
    return build_model(cfg.model, HEADS, 3)


def time_step(kind: str, arch: str, frames: int, size: int, batch: int, precision: str, steps: int) -> dict:
    """Return {"clips_s", "flops_per_clip", "peak_mb"} of `steps` optimiser steps of `kind`
    (train | online | cached) after one warm-up step, on random clips on the device."""
    cfg = Config()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    student = _model(arch).to(device)
    x = torch.randn(batch, frames, 3, size, size, device=device)  # model-ready clips [N, T, C, S, S]
    labels = {h: torch.randint(0, n, (batch,), device=device) for h, n in HEADS.items()}
    flops = 3 * count_flops(student, x[:1])
    teachers = []
    if kind == "online":
        teachers = [_model(arch).to(device).eval().requires_grad_(False) for _ in MODALITIES]
        flops += sum(count_flops(t, x[:1]) for t in teachers)
    cached = {h: torch.randn(batch, n, device=device) for h, n in HEADS.items()}
    optimizer = build_optimizer(student, cfg.optim)
    objective = SupervisedObjective()
    # What Accelerate's bf16 does (autocast, no loss scaling); its state cannot change precision
    # within one process, so the step is written out here.
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def step() -> None:
        with autocast:
            logits = student(x)
            if kind == "train":
                loss, _ = objective(logits, {"labels": labels})
            else:
                if teachers:
                    with torch.no_grad():  # one input stands in for each teacher's modality
                        outs = [t(x) for t in teachers]
                    teacher = {h: torch.stack([o[h].float() for o in outs]).mean(0) for h in HEADS}
                else:
                    teacher = cached
                loss, _ = distill_loss(logits, teacher, labels, alpha_gt=1.0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    student.train()
    step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    seconds = (time.perf_counter() - t) / steps
    return {"clips_s": batch / seconds, "flops_per_clip": flops, "peak_mb": _peak_memory_mb(device)}


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def run(args: argparse.Namespace, device: torch.device) -> list[str]:
    """Return the table's Markdown lines."""
    smoke = args.cpu_smoke
    arch, frames, size = ("swin_nano", 4, 32) if smoke else ("swin_t", 16, 224)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (smoke run: tiny sizes, not a measurement)"
    bf16_peak, fp32_peak = device_peak(name, args.peak_tflops, args.peak_tflops_fp32)
    lines = [f"Device: {name}; torch {torch.__version__}; peak TFLOP/s used for MFU: bf16 {_fmt(bf16_peak, 'g')}, "
             f"fp32 {_fmt(fp32_peak, 'g')}\n",
             "| row | setting | clips/s | peak memory (MB) | MFU |", "|---|---|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        samples = build_stores(Path(tmp), videos=2 if smoke else 4, frames=40 if smoke else 240)
        cfg = _config(Path(tmp))
        if smoke:
            cfg.data.num_frames, cfg.data.size = 4, 32
        batches = 2 if smoke else args.loader_batches
        for workers in args.workers:
            rate = loader_rate(cfg, samples, workers, "cpu", device, args.batch, batches)
            lines.append(f"| loader, rgb+flow+audio | CPU decode, {workers} workers | {rate:.1f} | - | - |")
        rate = loader_rate(cfg, samples, max(args.workers), "gpu", device, args.batch, batches)
        lines.append(f"| loader, rgb+flow+audio | GPU decode, {max(args.workers)} workers | {rate:.1f} | - | - |")
    for kind, label in (("train", "train step"), ("online", "distill step, online (3 teachers)"),
                        ("cached", "distill step, cached logits")):
        for precision, peak in (("bf16", bf16_peak), ("no", fp32_peak)):
            r = time_step(kind, arch, frames, size, args.batch, precision, 1 if smoke else args.steps)
            mfu = None if peak is None else 100 * r["clips_s"] * r["flops_per_clip"] / (peak * 1e12)
            lines.append(f"| {arch} {frames}x{size} {label} | {'bf16' if precision == 'bf16' else 'fp32'}, batch {args.batch}, "
                         f"{r['flops_per_clip'] / 1e9:.3g} GFLOP/clip | {r['clips_s']:.2f} | {_fmt(r['peak_mb'], '.0f')} | "
                         f"{_fmt(mfu, '.1f')}{'' if mfu is None else '%'} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-smoke", "--dry-run", action="store_true",
                        help="run every row at tiny sizes on the CPU (exercises the code; the numbers mean nothing)")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="loader worker counts for the CPU-decode rows (default: 1, half and all of the cores)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="timed optimiser steps per row (after one warm-up)")
    parser.add_argument("--loader-batches", type=int, default=40)
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak (TFLOP/s)")
    parser.add_argument("--peak-tflops-fp32", type=float, default=None, help="the device's fp32 peak (TFLOP/s)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() and not args.cpu_smoke:
        print("benchmarks/gpu.py: no CUDA device here (torch.cuda.is_available() is False); nothing measured "
              "(--cpu-smoke runs every row at tiny sizes on the CPU)")
        return 0
    device = torch.device("cpu" if args.cpu_smoke else "cuda")
    if args.workers is None:
        cores = os.cpu_count() or 1
        args.workers = [1] if args.cpu_smoke else sorted({1, max(1, cores // 2), cores})
    if args.cpu_smoke:
        args.batch = 2
    print("\n".join(run(args, device)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
