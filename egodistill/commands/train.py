"""`egodistill train CONFIG [key=value ...]`: train a model on one modality with the labels.

Parses the arguments and calls `egodistill.pipelines.train.run_train`.
"""
from __future__ import annotations

import argparse

from egodistill.config import load_config
from egodistill.pipelines.run_dir import is_main_process
from egodistill.pipelines.train import run_train, summary_line

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


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    summary = run_train(cfg, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    if is_main_process():
        print(f"trained {cfg.run_dir}: {summary_line(summary)}")
    return 0
