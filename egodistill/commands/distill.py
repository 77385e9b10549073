"""`egodistill distill CONFIG [key=value ...]`: distil an ensemble of trained teachers into a student.

Parses the arguments and calls `egodistill.pipelines.distill.run_distill`.
"""
from __future__ import annotations

import argparse

from egodistill.commands.train import add_run_arguments
from egodistill.config import load_config
from egodistill.pipelines.distill import run_distill
from egodistill.pipelines.train import summary_line

ORDER = 40


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "distill",
        help="distil trained teachers (any modalities) into a student (RGB by default)",
        description=(
            "Distil the weighted ensemble of trained unimodal teachers (distill.teachers: their run "
            "folders) into the student described by the config's model section. Weighting: "
            "distill.weighting=uniform|per-sample|dataset. distill.cache.views=K precomputes K views "
            "per sample with the ensemble's logits so that training never runs a teacher."
        ),
    )
    add_run_arguments(p, "configs/epic100/distill.yaml", "distill.cache.views=8")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    summary = run_distill(cfg, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    print(f"distilled into {cfg.run_dir}: {summary_line(summary)}")
    return 0
