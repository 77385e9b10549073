"""`egodistill train CONFIG [key=value ...]`: train a model on one modality with the labels.

A unimodal teacher (RGB, flow, audio, layout) or the RGB baseline. The best weights are chosen
on a held-out split of the training videos (data.heldout_fraction, recorded in heldout.json),
never on the split results are reported on.
"""
from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

from egodistill.config import Config, load_config

ORDER = 30


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a unimodal teacher or the RGB baseline on the labels",
        description=(
            "Train the config's model on its modality (model.modality) with the ground-truth labels: AdamW, "
            "linear warm-up then linear decay, gradient clipping, accumulation, mixed precision where the device "
            "supports it. The best checkpoint is selected on a held-out split carved from the training videos. "
            "Run with torchrun / accelerate launch for several processes."
        ),
    )
    add_run_arguments(p, "configs/epic100/rgb.yaml", "optim.lr=3e-4 train.epochs=5")
    p.set_defaults(func=main)


def add_run_arguments(p: argparse.ArgumentParser, example_config: str, example_overrides: str) -> None:
    """Add the arguments every run-producing command shares (`train`, `distill`)."""
    p.add_argument("config", help=f"YAML config, e.g. {example_config}")
    p.add_argument("overrides", nargs="*", help=f"key.sub=value overrides, e.g. {example_overrides}")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue the run folder from its last/ state")
    group.add_argument("--overwrite", action="store_true", help="delete an existing run folder and start again")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")


def summary_line(summary: dict[str, Any]) -> str:
    """Return the epoch, step and top-1 / ECE entries of a run summary as one line."""
    shown = {k: v for k, v in summary.items() if k in ("epoch", "step", "selected") or k.endswith(("_top1", "_ece"))}
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items()) or "done"


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    summary = run_train(cfg, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    if _is_main_process():
        print(f"trained {cfg.run_dir}: {summary_line(summary)}")
    return 0


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def prepare_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Create `run_dir`; refuse one that holds a run unless resuming or overwriting."""
    if resume:
        if not (run_dir / "config.yaml").is_file():
            raise FileNotFoundError(f"--resume: {run_dir} holds no run to resume (no config.yaml)")
        return
    if not _is_main_process():  # the first process decides; the others must not race it
        run_dir.mkdir(parents=True, exist_ok=True)
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise ValueError(f"run folder {run_dir} already exists; use --resume to continue it or --overwrite "
                             f"to start it again (or set run_dir=...)")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def run_train(cfg: Config, *, resume: bool = False, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train `cfg.model` on `cfg.data.train_split` minus the held-out videos; returns `fit`'s summary."""
    from egodistill.data.annotations import build_reader
    from egodistill.data.dataset import build_dataset
    from egodistill.data.modalities import get_modality
    from egodistill.engine.checkpoint import model_heads
    from egodistill.engine.heldout import HELDOUT_FILE, read_heldout_ids, split_by_ids, split_heldout, write_heldout
    from egodistill.engine.trainer import SupervisedObjective, fit, seed_everything
    from egodistill.models import build_model

    run_dir = Path(cfg.run_dir)
    prepare_run_dir(run_dir, resume=resume, overwrite=overwrite)
    reader = build_reader(cfg)
    info = reader.info()
    samples = reader.samples(cfg.data.train_split)
    if resume and (run_dir / HELDOUT_FILE).is_file():
        train_samples, heldout = split_by_ids(samples, read_heldout_ids(run_dir), str(run_dir / HELDOUT_FILE))
    else:
        train_samples, heldout = split_heldout(samples, cfg.data.heldout_fraction, cfg.train.seed)
        if _is_main_process():
            write_heldout(run_dir, heldout, fraction=cfg.data.heldout_fraction, seed=cfg.train.seed)
    if not train_samples:
        raise ValueError(f"no training samples left in split '{cfg.data.train_split}' after holding out "
                         f"{len(heldout)} samples")
    seed_everything(cfg.train.seed)  # the same initial weights on every process and every run
    heads = model_heads(cfg, info)
    model = build_model(cfg.model, heads, get_modality(cfg.model.modality).channels(cfg))
    train_set = build_dataset(cfg, cfg.data.train_split, train=True, samples=train_samples)
    heldout_set = build_dataset(cfg, cfg.data.train_split, train=False, samples=heldout) if heldout else None
    if _is_main_process():
        print(f"train: {cfg.model.modality} {cfg.model.preset} on {len(train_samples)} samples "
              f"({len(heldout)} held out for model selection); heads "
              + ", ".join(f"{h} ({n})" for h, n in heads.items()))
    objective = SupervisedObjective(cfg.train.head_weights)
    return fit(cfg, run_dir, model, objective, train_set, heldout_set, info, resume=resume, progress=progress)
