"""Training one model on the labels: a unimodal teacher (RGB, flow, audio, layout) or the RGB baseline.

The best weights are chosen on a held-out split of the training videos (data.heldout_fraction,
recorded in heldout.json), never on the split results are reported on. `egodistill train`
parses its arguments and calls `run_train`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from egodistill.config import Config
from egodistill.pipelines.run_dir import (
    check_can_run,
    check_run_dir,
    discard_failed_start,
    is_main_process,
    prepare_run_dir,
)


def summary_line(summary: dict[str, Any]) -> str:
    """Return the epoch, step and top-1 / ECE entries of a run summary as one line."""
    shown = {k: v for k, v in summary.items() if k in ("epoch", "step", "selected") or k.endswith(("_top1", "_ece"))}
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items()) or "done"


def run_train(cfg: Config, *, resume: bool = False, overwrite: bool = False, progress: bool = True,
              callbacks: Sequence[Callable] = ()) -> dict[str, Any]:
    """Train `cfg.model` on `cfg.data.train_split` minus the held-out videos; returns `fit`'s summary.
    `callbacks` are the trainer's checkpoint callbacks (`engine.trainer.CheckpointCallback`)."""
    from egodistill.data.annotations import build_reader
    from egodistill.data.dataset import build_dataset
    from egodistill.data.modalities import get_modality
    from egodistill.engine.checkpoint import model_heads
    from egodistill.engine.heldout import HELDOUT_FILE, read_heldout_ids, split_by_ids, split_heldout, write_heldout
    from egodistill.engine.objectives import SupervisedObjective
    from egodistill.engine.trainer import fit, seed_everything
    from egodistill.models import build_model

    run_dir = Path(cfg.run_dir)
    # Everything is checked (run folder, annotations, model, stores) before the folder changes.
    check_run_dir(run_dir, resume=resume, overwrite=overwrite, cfg=cfg)
    check_can_run(cfg)
    reader = build_reader(cfg)
    info = reader.info()
    samples = reader.samples(cfg.data.train_split)
    new_heldout = not (resume and (run_dir / HELDOUT_FILE).is_file())
    if not new_heldout:
        train_samples, heldout = split_by_ids(samples, read_heldout_ids(run_dir), str(run_dir / HELDOUT_FILE))
    else:
        train_samples, heldout = split_heldout(samples, cfg.data.heldout_fraction, cfg.train.seed)
    if not train_samples:
        raise ValueError(f"no training samples left in split '{cfg.data.train_split}' after holding out "
                         f"{len(heldout)} samples")
    seed_everything(cfg.train.seed)  # the same initial weights on every process and every run
    heads = model_heads(cfg, info)
    model = build_model(cfg.model, heads, get_modality(cfg.model.modality).channels(cfg))
    train_set = build_dataset(cfg, cfg.data.train_split, train=True, samples=train_samples)
    heldout_set = build_dataset(cfg, cfg.data.train_split, train=False, samples=heldout) if heldout else None
    fresh = prepare_run_dir(run_dir, resume=resume, overwrite=overwrite, cfg=cfg)
    if new_heldout and is_main_process():
        with discard_failed_start(run_dir, fresh):
            write_heldout(run_dir, heldout, fraction=cfg.data.heldout_fraction, seed=cfg.train.seed)
    if is_main_process():
        print(f"train: {cfg.model.modality} {cfg.model.arch} on {len(train_samples)} samples "
              f"({len(heldout)} held out for model selection); heads "
              + ", ".join(f"{h} ({n})" for h, n in heads.items()))
    objective = SupervisedObjective(cfg.train.head_weights)
    with discard_failed_start(run_dir, fresh):
        return fit(cfg, run_dir, model, objective, train_set, heldout_set, info, resume=resume, progress=progress,
                   callbacks=callbacks)
