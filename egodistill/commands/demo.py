"""`egodistill demo`: synth -> teachers -> distilled students -> evaluation table and report."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

ORDER = 5


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the whole method on a synthetic egocentric dataset and print the results table",
        description=(
            "Generate a synthetic multimodal egocentric dataset, train an RGB baseline and flow / audio / layout "
            "teachers, distill their ensemble into an RGB student of the baseline's architecture (and a half-frame "
            "student, and one distilled on unlabelled clips as well), evaluate every model and the ensemble, print "
            "one table, write report.md with a summary figure and plots, and predict on an exported clip with the "
            "baseline and the students side by side."
        ),
    )
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and of every run")
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke test (under 2 minutes)")
    p.add_argument("--student", action="append", metavar="ARCH",
                   help="student architecture (any registered one, see `egodistill info --list`); repeat to add "
                        "students, each with its own RGB baseline; the first is also the RGB teacher "
                        "(default: cnn3d_nano)")
    p.add_argument("--unlabelled", type=float, default=None, metavar="FACTOR",
                   help="unlabelled clips per labelled training clip for the student_unlabelled row "
                        "(default 2; 0 leaves it out)")
    p.add_argument("--workers", type=int, default=2, help="processes for building the synthetic data")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from egodistill.demo import run_demo

    from egodistill.config import ConfigError, ModelConfig

    for arch in args.student or []:
        try:
            ModelConfig(arch=arch, modality="rgb")  # students read RGB clips
        except ConfigError as e:
            raise ValueError(str(e).replace("model.arch", "--student").replace("model.modality 'rgb'", "the RGB student")) from None
    if args.unlabelled is not None and not (0 <= args.unlabelled < math.inf):
        raise ValueError(f"--unlabelled must be a number >= 0 (unlabelled clips per labelled clip), got {args.unlabelled}")
    run_demo(Path(args.out), seed=args.seed, quick=args.quick, students=args.student, workers=args.workers,
             overwrite=args.overwrite, progress=not args.no_progress, unlabelled_factor=args.unlabelled)
    return 0
