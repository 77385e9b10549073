"""Seconds per epoch of the same student on the same data: supervised, online distillation,
cached distillation (teacher-logit cache), plus the students' validation accuracy.

    python benchmarks/distill_overhead.py                       # default synthetic data, ~10 min on 2 cores
    python benchmarks/distill_overhead.py --root DATA --runs R  # reuse a synth dataset / trained teachers

Steps: (1) `egodistill synth` data (default size) unless --root; (2) RGB, flow and audio teachers
trained with `run_train` (reused when their run folder exists); (3) the student trained three
ways with `fit` and no held-out evaluation inside the timed part, so that an epoch's seconds are
training only (data loading, teachers for online distillation, cache reads for cached):

* supervised: cross-entropy on the labels (SupervisedObjective), RGB only;
* online: DistillObjective with the dataset-weighted ensemble run on every batch (consistent
  views: the loader reads RGB, flow and audio);
* cached: the ensemble's logits precomputed for K views per sample (build time shown apart),
  replayed from the HDF5 cache; the loader reads RGB only.

Then each student is evaluated on the validation split (top-1 with its binomial 95% interval).
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from egodistill.pipelines.train import run_train
from egodistill.config import Config, config_from_dict
from egodistill.data.annotations import build_reader
from egodistill.data.dataset import MultimodalDataset, build_loader
from egodistill.data.modalities import get_modality
from egodistill.distill.data import CachedViewsDataset, build_cache
from egodistill.distill.ensemble import EnsembleTeacher
from egodistill.distill.teachers import compute_dataset_weights, load_teachers, shared_heldout_ids
from egodistill.engine.checkpoint import model_heads
from egodistill.engine.evaluate import ModelPredictor, evaluate_dataset
from egodistill.engine.heldout import split_by_ids
from egodistill.engine.objectives import DistillObjective, SupervisedObjective
from egodistill.engine.trainer import fit, seed_everything
from egodistill.models import build_model

TEACHERS = ("rgb", "flow", "audio")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", help="synthetic dataset folder (default: generate the default one in a temp folder)")
    p.add_argument("--runs", help="folder for the teacher runs (reused when present; default: temp)")
    p.add_argument("--epochs", type=int, default=10, help="student epochs per mode (accuracy runs)")
    p.add_argument("--teacher-epochs", type=int, default=20)
    p.add_argument("--arch", default="swin_nano", help="student and teacher architecture")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--views", type=int, default=0, help="cached views K per sample (default: --epochs)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3,
                   help="timing: one-epoch runs per mode, interleaved, the median is reported")
    return p.parse_args(argv)


def base_config(root: Path, args: argparse.Namespace) -> Config:
    with open(root / "data.yaml") as f:
        cfg = config_from_dict(yaml.safe_load(f))
    cfg.data.num_frames, cfg.data.stride, cfg.data.size = args.frames, 2, args.size
    cfg.data.test_clips, cfg.data.test_crops = 1, 1
    cfg.train.batch_size, cfg.train.eval_batch_size, cfg.train.workers = args.batch_size, 32, args.workers
    cfg.train.seed, cfg.train.log_every = args.seed, 10
    cfg.optim.lr, cfg.optim.warmup_epochs = args.lr, 0.5
    cfg.model = dataclasses.replace(cfg.model, arch=args.arch, drop_path=0.1)
    return cfg


def with_(cfg: Config, run_dir: Path, modality: str, epochs: int) -> Config:
    return dataclasses.replace(
        cfg, name=run_dir.name, run_dir=str(run_dir),
        model=dataclasses.replace(cfg.model, modality=modality),
        train=dataclasses.replace(cfg.train, epochs=epochs),
    )


def timed_fit(cfg: Config, objective, train_set, info, heads: dict[str, int]) -> tuple[float, torch.nn.Module]:
    """Return (seconds per epoch, trained model) of `fit` without held-out evaluation."""
    seed_everything(cfg.train.seed)
    model = build_model(cfg.model, heads, get_modality(cfg.model.modality).channels(cfg))
    shutil.rmtree(cfg.run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    fit(cfg, cfg.run_dir, model, objective, train_set, None, info, progress=False)
    return (time.perf_counter() - t0) / cfg.train.epochs, model


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    work = Path(tempfile.mkdtemp(prefix="distill_overhead_"))
    root = Path(args.root) if args.root else work / "synth"
    if not (root / "data.yaml").is_file():
        from egodistill.synth import SynthConfig, generate

        t0 = time.perf_counter()
        generate(root, SynthConfig(seed=0), workers=2, progress=False)
        print(f"synthetic data: {root} ({time.perf_counter() - t0:.0f} s)")
    runs = Path(args.runs) if args.runs else work / "runs"
    cfg = base_config(root, args)

    # Teachers (not timed here: `train` is the supervised case below).
    for m in TEACHERS:
        if not (runs / m / "model.safetensors").is_file():
            shutil.rmtree(runs / m, ignore_errors=True)
            t0 = time.perf_counter()
            run_train(with_(cfg, runs / m, m, args.teacher_epochs), progress=False)
            print(f"teacher {m}: {time.perf_counter() - t0:.0f} s")
    teachers = load_teachers([str(runs / m) for m in TEACHERS])

    reader = build_reader(cfg)
    info = reader.info()
    heads = model_heads(cfg, info)
    train_samples, heldout = split_by_ids(reader.samples(cfg.data.train_split), shared_heldout_ids(teachers))
    val = MultimodalDataset(cfg, reader.samples(cfg.data.eval_split), ["rgb"], train=False)
    weights_rec = compute_dataset_weights(teachers, build_loader(MultimodalDataset(cfg, heldout, list(TEACHERS), False), cfg,
                                                                 train=False), list(heads), 1.0)
    weights = {h: torch.tensor(w) for h, w in weights_rec["weights"].items()}
    ensemble = EnsembleTeacher([t.teacher for t in teachers], "dataset", weights=weights, heads=list(heads))
    k = args.views or args.epochs
    print(f"student {args.arch}, {args.frames} frames at {args.size}x{args.size}, batch {args.batch_size}, "
          f"{len(train_samples)} training samples, {args.epochs} epochs, {args.workers} loader workers, "
          f"{torch.get_num_threads()} threads; teachers rgb, flow, audio ({args.arch}); cache K={k}")

    t0 = time.perf_counter()
    cache = build_cache(work / "teacher_cache.h5", MultimodalDataset(cfg, train_samples, list(TEACHERS), train=True), ensemble,
                        k, {"benchmark": True}, heads, seed=args.seed, batch_size=32, progress=False)
    build_s = time.perf_counter() - t0

    def mode(name: str, epochs: int):
        """Return (config, objective, training set) of one mode."""
        c = with_(cfg, work / f"student_{name.split()[0]}", "rgb", epochs)
        if name == "supervised":
            return c, SupervisedObjective(cfg.train.head_weights), MultimodalDataset(c, train_samples, ["rgb"], train=True)
        if name == "online distillation":
            return c, DistillObjective(ensemble), MultimodalDataset(c, train_samples, list(TEACHERS), train=True)
        return c, DistillObjective(None), CachedViewsDataset(c, train_samples, "rgb", cache)

    names = ["supervised", "online distillation", "cached distillation"]
    # Timing: one-epoch runs, modes interleaved so that a slow spell of the machine hits all three.
    times: dict[str, list[float]] = {n: [] for n in names}
    for n in names:  # warm-up (first-call costs: thread pools, allocator, file caches), not counted
        timed_fit(*mode(n, 1), info, heads)
    for _ in range(args.repeats):
        for n in names:
            times[n].append(timed_fit(*mode(n, 1), info, heads)[0])
    # Accuracy: each student trained for --epochs.
    results: dict[str, dict] = {}
    for n in names:
        _, model = timed_fit(*mode(n, args.epochs), info, heads)
        results[n] = {"s": float(np.median(times[n])), "all": times[n], "model": model}

    for name, r in results.items():
        net = r["model"].eval()
        with torch.no_grad():
            r["metrics"], _, _ = evaluate_dataset(ModelPredictor(net, cfg.model), val, cfg, info)
    with torch.no_grad():
        ens_cfg = dataclasses.replace(cfg)
        ens_val = MultimodalDataset(ens_cfg, val.samples, list(TEACHERS), train=False)
        teacher_metrics, _, _ = evaluate_dataset(ensemble, ens_val, cfg, info)

    base = results["supervised"]["s"]
    n = results["supervised"]["metrics"]["num_samples"]
    print()
    print(f"| mode | s / epoch (median of {args.repeats}) | x supervised | verb top-1 | noun top-1 | action top-1 |"
          f"  (validation, n={int(n)}, students trained {args.epochs} epochs)")
    print("|---|---|---|---|---|---|")

    def acc(m: dict, key: str) -> str:
        ci = m.get(f"{key}_ci95", None)
        return f"{m[key]:.1f}" + (f" ± {ci:.1f}" if ci is not None else "")

    for name, r in results.items():
        m = r["metrics"]
        print(f"| {name} | {r['s']:.2f} | {r['s'] / base:.2f} | {acc(m, 'verb_top1')} | {acc(m, 'noun_top1')} | "
              f"{acc(m, 'action_top1')} |")
    print(f"| teacher ensemble (rgb+flow+audio) | - | - | {acc(teacher_metrics, 'verb_top1')} | "
          f"{acc(teacher_metrics, 'noun_top1')} | {acc(teacher_metrics, 'action_top1')} |")
    print("\nseconds per epoch of each timing run: " + "; ".join(
        f"{n}: " + ", ".join(f"{t:.2f}" for t in r["all"]) for n, r in results.items()))
    print(f"cache build (once, {len(train_samples)} samples x {k} views): {build_s:.1f} s "
          f"= {build_s / base:.2f} supervised epochs")
    print("dataset weights: " + "; ".join(f"{h}: " + ", ".join(f"{m} {w:.3f}" for m, w in zip(TEACHERS, ws))
                                          for h, ws in weights_rec["weights"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
