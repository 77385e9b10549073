"""`egodistill train CONFIG [key=value ...]`: train a model on one modality with the labels.

A unimodal teacher (RGB, flow, audio, layout) or the RGB baseline. The best weights are chosen
on a held-out split of the training videos (data.heldout_fraction, recorded in heldout.json),
never on the split results are reported on.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
from pathlib import Path
from collections.abc import Callable, Sequence
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


# What a run folder holds before its first saved state: a failed start leaves only these, and
# removing them loses nothing (--resume needs last/).
_START_FILES = {"config.yaml", "info.json", "heldout.json", "metrics.jsonl", "dataset_weights.json", "plots",
                "tensorboard"}
_RUN_SECTIONS = ("run_dir", "data", "model", "optim", "train")


def is_run_folder(run_dir: Path) -> bool:
    """True when `run_dir` holds a config.yaml written by egodistill (a resolved run config: a
    mapping with run_dir and the data, model, optim and train sections)."""
    import yaml

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return False
    try:
        with open(path) as f:
            tree = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(tree, dict) and all(k in tree for k in _RUN_SECTIONS) and \
        all(isinstance(tree[k], dict) for k in _RUN_SECTIONS[1:])


def _inputs_of(cfg: Config) -> list[tuple[str, Path]]:
    """Return (what, resolved path) of everything a run reads: data root, annotation files,
    stores, teachers, the pretrained checkpoint and the teacher cache."""
    from egodistill.config import resolve_path

    found: list[tuple[str, Path]] = []
    if cfg.data.root:
        found.append(("data.root", Path(cfg.data.root).expanduser()))
    found += [(f"data.files.{k}", resolve_path(cfg, v)) for k, v in cfg.data.files.items() if v]
    found += [(f"data.stores.{k}", resolve_path(cfg, v)) for k, v in cfg.data.stores.items() if v]
    found += [("distill.teachers", Path(t).expanduser()) for t in cfg.distill.teachers]
    if cfg.model.pretrained:
        found.append(("model.pretrained", Path(cfg.model.pretrained).expanduser()))
    return [(what, p.resolve()) for what, p in found]


def check_run_dir(run_dir: Path, *, resume: bool, overwrite: bool, cfg: Config | None = None) -> None:
    """Raise unless a run may start in `run_dir`; changes nothing on disk.

    With --overwrite the folder must be a run folder (`is_run_folder`) and must not hold any of
    the run's own inputs (`cfg`'s data, stores, teachers), so nothing but an old run is deleted."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"run_dir {run_dir} is a file, not a folder; set run_dir=... to a folder")
    if resume:
        if not (run_dir / "config.yaml").is_file():
            raise FileNotFoundError(f"--resume: {run_dir} holds no run to resume (no config.yaml)")
        return
    if not (run_dir.exists() and any(run_dir.iterdir())):
        return
    if not overwrite:
        raise ValueError(f"run folder {run_dir} already exists; use --resume to continue it or --overwrite "
                         f"to start it again (or set run_dir=...)")
    if not is_run_folder(run_dir):
        entries = sorted(p.name for p in run_dir.iterdir())
        raise ValueError(f"--overwrite: {run_dir} is not a run folder (no config.yaml written by egodistill), so it "
                         f"is not deleted; it holds {len(entries)} entries ({', '.join(entries[:5])}"
                         f"{', ...' if len(entries) > 5 else ''}). Set run_dir=... to another folder")
    if cfg is not None:
        root = run_dir.resolve()
        for what, path in _inputs_of(cfg):
            if path == root or root in path.parents:
                raise ValueError(f"--overwrite: run folder {run_dir} holds this run's input {what} ({path}); "
                                 f"it is not deleted. Set run_dir=... to another folder")


def prepare_run_dir(run_dir: Path, *, resume: bool, overwrite: bool, cfg: Config | None = None) -> bool:
    """Create `run_dir` (with --overwrite, after deleting the old run in it); refuse one that holds
    a run unless resuming or overwriting, and anything but a run folder (`check_run_dir`).
    Returns True when the run starts in a new, empty folder (see `discard_failed_start`).

    Call it once the config and the data have been checked: nothing is deleted before the new
    run can start."""
    check_run_dir(run_dir, resume=resume, overwrite=overwrite, cfg=cfg)
    if resume:
        return False
    if not _is_main_process():  # the first process decides; the others must not race it
        run_dir.mkdir(parents=True, exist_ok=True)
        return False
    if run_dir.exists() and any(run_dir.iterdir()):
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return True


@contextlib.contextmanager
def discard_failed_start(run_dir: Path, fresh: bool | Callable[[], bool]):
    """Remove `run_dir` when the block raises before the run saved anything (no weights, no
    last/, only `_START_FILES`), so the next attempt needs no --overwrite. `fresh`: the folder
    was made for this run (`prepare_run_dir`'s result), or a function returning that."""
    try:
        yield
    except BaseException:
        made = fresh() if callable(fresh) else fresh
        if made and _is_main_process() and run_dir.is_dir():
            names = [p.name for p in run_dir.iterdir()]
            if all(n in _START_FILES or n.endswith(".tmp") for n in names):
                shutil.rmtree(run_dir, ignore_errors=True)
        raise


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
    if new_heldout and _is_main_process():
        with discard_failed_start(run_dir, fresh):
            write_heldout(run_dir, heldout, fraction=cfg.data.heldout_fraction, seed=cfg.train.seed)
    if _is_main_process():
        print(f"train: {cfg.model.modality} {cfg.model.arch} on {len(train_samples)} samples "
              f"({len(heldout)} held out for model selection); heads "
              + ", ".join(f"{h} ({n})" for h, n in heads.items()))
    objective = SupervisedObjective(cfg.train.head_weights)
    with discard_failed_start(run_dir, fresh):
        return fit(cfg, run_dir, model, objective, train_set, heldout_set, info, resume=resume, progress=progress,
                   callbacks=callbacks)
