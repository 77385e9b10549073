"""`egodistill demo`: synth -> teachers -> distilled students -> evaluation table and report."""
from __future__ import annotations

import argparse
from pathlib import Path

ORDER = 5


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the whole method on a synthetic egocentric dataset and print the results table",
        description=(
            "Generate a synthetic multimodal egocentric dataset, train an RGB baseline and flow / audio / layout "
            "teachers, distill their ensemble into an RGB student (and a half-frame student), evaluate every model "
            "and the ensemble, print one table, write report.md with plots, and predict on an exported clip."
        ),
    )
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and of every run")
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke test (under 2 minutes)")
    p.add_argument("--workers", type=int, default=2, help="processes for building the synthetic data")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from egodistill.demo import run_demo

    run_demo(Path(args.out), seed=args.seed, quick=args.quick, workers=args.workers, overwrite=args.overwrite,
             progress=not args.no_progress)
    return 0
