"""Inference on this machine: PyTorch eager vs ONNX Runtime for the demo student, swin_nano and Swin-T.

For each model and backend: forward clips/s (batches of the model's input views), the real-time
factor of streaming prediction at a 1-second hop (`predict_timeline`, 2-second windows: seconds
of video per second of wall time, decoding included; above 1 is faster than real time) and the
peak RSS of the process while it streams a generated 1280x720 video of 1 minute and of 10
minutes (each stream in a fresh process, its RSS high-water mark reset once the model is loaded;
the target is a 10-minute peak within 10% of the 1-minute one). Clips/s is the best of three
turns per backend, the backends alternating. The videos are generated with PyAV in a temporary folder (a moving bar over a
gradient, libx264) and removed afterwards. Swin-T at 16x224 is far slower than real time on a
CPU, so it streams a shorter video (`--swin-t-seconds`) for its real-time factor and peak RSS.

    python benchmarks/inference.py                                   # random weights, all three models
    python benchmarks/inference.py --demo-run /tmp/demo/runs/student --models student swin_nano
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# model -> (arch, frames, size, windows per forward pass): the demo student's view, swin_nano's CPU
# preset, the paper's Swin-T (one window, 2 views, at a time: a batch of 16 of its 16x224 clips
# takes ~16 GB in ONNX Runtime, whose attention is explicit).
MODELS = {"student": ("cnn3d_nano", 4, 32, 8), "swin_nano": ("swin_nano", 8, 32, 8), "swin_t": ("swin_t", 16, 224, 1)}
HEADS = {"verb": 97, "noun": 300}


def make_video(path: Path, seconds: float, fps: int, width: int = 1280, height: int = 720) -> Path:
    """Write a `seconds`-long libx264 video of a bar moving over a gradient."""
    import av

    base = np.zeros((height, width, 3), np.uint8)
    base[..., 0] = np.linspace(0, 200, width, dtype=np.uint8)[None]
    base[..., 1] = np.linspace(0, 160, height, dtype=np.uint8)[:, None]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast", "tune": "zerolatency"}
        img = base.copy()
        for i in range(int(seconds * fps)):
            x = (8 * i) % (width - 40)
            img[:, max(0, x - 8):x] = base[:, max(0, x - 8):x]  # undo the previous bar's trail
            img[:, x:x + 40] = (250, 250, 40)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
            img[:, x:x + 40] = base[:, x:x + 40]
        container.mux(stream.encode())
    return path


def build(model: str, demo_run: str | None):
    """Return (config, model, info) of a benchmark model: the demo run's student, or random weights."""
    import torch

    from egodistill.config import config_from_dict
    from egodistill.data.records import DatasetInfo
    from egodistill.engine.checkpoint import build_run_model, load_run

    if model == "student" and demo_run:
        return load_run(demo_run)
    arch, frames, size, _ = MODELS[model]
    cfg = config_from_dict({"model": {"arch": arch, "drop_path": 0.0},
                            "data": {"num_frames": frames, "size": size, "test_clips": 2, "test_crops": 1}})
    info = DatasetInfo("epic100", {h: [f"{h}{i}" for i in range(n)] for h, n in HEADS.items()},
                       action_heads=("verb", "noun"))
    torch.manual_seed(0)
    return cfg, build_run_model(cfg, info).eval(), info


def predictor(model: str, backend: str, demo_run: str | None, onnx_file: str):
    from egodistill.engine.export import load_exported
    from egodistill.engine.predict import TorchPredictor

    if backend == "onnxruntime":
        return load_exported(onnx_file)
    cfg, net, info = build(model, demo_run)
    return TorchPredictor(cfg, net, info, "cpu")


def memory_mb(field: str) -> float:
    """Return a /proc/self/status memory field (VmRSS, VmHWM) in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(job: dict) -> dict:
    """Stream one video with one model and backend in this process; return the timings, the RSS
    before streaming and the peak RSS while streaming (the kernel's high-water mark, reset first)."""
    from egodistill.engine.timeline import predict_timeline

    pred = predictor(job["model"], job["backend"], job["demo_run"], job["onnx"])
    base = memory_mb("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    except OSError:
        pass
    t0 = time.perf_counter()
    record = predict_timeline(job["video"], pred, window=2.0, hop=1.0, batch_size=MODELS[job["model"]][3])
    wall = time.perf_counter() - t0
    seconds = record["windows"][-1]["end"]
    return {"wall": wall, "windows": len(record["windows"]), "rtf": seconds / wall, "base_rss_mb": base,
            "peak_rss_mb": memory_mb("VmHWM")}


def stream_in_child(job: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"worker {job['model']} {job['backend']} failed (exit {out.returncode}; -9: killed, "
                           f"e.g. out of memory): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def clips_per_second(runs: dict, x, seconds: float, rounds: int = 3) -> dict[str, float]:
    """Return {backend: clips/s}: the best of `rounds` timings of at least `seconds` each, the
    backends taking turns (a shared machine's load then weighs on both alike)."""
    best = dict.fromkeys(runs, 0.0)
    for name, run in runs.items():
        run(x)  # warm-up
    for _ in range(rounds):
        for name, run in runs.items():
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds or n < 2:
                run(x)
                n += 1
            best[name] = max(best[name], n * x.shape[0] / (time.perf_counter() - t0))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--demo-run", help="the demo's student run folder (default: cnn3d_nano 4x32, random weights)")
    parser.add_argument("--fps", type=int, default=15, help="frame rate of the generated videos (default 15)")
    parser.add_argument("--long-minutes", type=float, default=10.0)
    parser.add_argument("--short-minutes", type=float, default=1.0)
    parser.add_argument("--swin-t-seconds", type=float, default=20.0, help="video length Swin-T streams")
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum seconds per clips/s timing (best of 3)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    import torch

    from egodistill.engine.export import export_model, load_runner
    from egodistill.engine.predict import ClipSpec

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; videos 1280x720 at {args.fps} fps")
    with tempfile.TemporaryDirectory(prefix="egodistill-bench-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        videos = {"short": make_video(tmp / "short.mp4", args.short_minutes * 60, args.fps)}
        if "swin_t" in args.models:
            videos["swin_t"] = make_video(tmp / "swin_t.mp4", args.swin_t_seconds, args.fps)
        if any(m != "swin_t" for m in args.models):
            videos["long"] = make_video(tmp / "long.mp4", args.long_minutes * 60, args.fps)
        print(f"generated the videos in {time.perf_counter() - t0:.0f} s", flush=True)
        rows = []
        for name in args.models:
            cfg, model, info = build(name, args.demo_run)
            spec = ClipSpec.from_run(cfg, info)
            onnx = tmp / f"{name}.onnx"
            export_model(model, spec, "onnx", onnx, arch=cfg.model.arch)
            ort_run = load_runner(onnx, "onnx", list(model.heads))
            batch = 2 if name == "swin_t" else 8
            x = torch.randn(batch, spec.input_frames, 3, spec.data.size, spec.data.size)

            def eager(z):
                with torch.no_grad():
                    return model(z)

            speeds = clips_per_second({"eager": eager, "onnxruntime": ort_run}, x, args.seconds)
            for backend, cps in speeds.items():
                job = {"model": name, "backend": backend, "demo_run": args.demo_run, "onnx": str(onnx)}
                if name == "swin_t":
                    short = stream_in_child({**job, "video": str(videos["swin_t"])})
                    long_ = None
                else:
                    short = stream_in_child({**job, "video": str(videos["short"])})
                    long_ = stream_in_child({**job, "video": str(videos["long"])})
                rows.append(row(name, f"{cfg.model.arch} {spec.input_frames}x{spec.data.size}", backend, cps, short,
                                long_, args.swin_t_seconds))
                print(rows[-1], flush=True)
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("| model | view | backend | clips/s | real-time factor (1 s hop) | RSS before (MB) | "
          "peak RSS streaming 1 min (MB) | peak RSS streaming 10 min (MB) | 10 min / 1 min |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


def row(name: str, view: str, backend: str, cps: float, short: dict, long_: dict | None, short_seconds: float) -> str:
    """Return one markdown table row."""
    if long_ is None:
        tail = f"{short['base_rss_mb']:.0f} | {short['peak_rss_mb']:.0f} ({short_seconds:g} s video) | - | - |"
    else:
        tail = (f"{short['base_rss_mb']:.0f} | {short['peak_rss_mb']:.0f} | {long_['peak_rss_mb']:.0f} | "
                f"{long_['peak_rss_mb'] / short['peak_rss_mb']:.2f} |")
    return f"| {name} | {view} | {backend} | {cps:.1f} | {short['rtf']:.2f}x | {tail}"


if __name__ == "__main__":
    main()
