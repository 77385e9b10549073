"""`egodistill calibrate RUN`: temperature-scale a trained model on its held-out clips.

Parses the arguments and calls `egodistill.pipelines.calibrate.run_calibrate`.
"""
from __future__ import annotations

import argparse

ORDER = 55


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "calibrate",
        help="fit a trained run's per-head temperatures on its held-out clips (calibrated probabilities)",
        description=(
            "Fit one temperature per head on the run's held-out clips (heldout.json: training videos kept out of "
            "training), the one that minimises their negative log-likelihood, and write RUN/calibration.json. "
            "evaluate, predict and export then divide the model's logits by it: the probabilities change, each "
            "head's top-1 never does (the order of EPIC actions below the first may). The record holds the digest "
            "of the best weights it was fitted for; other weights are not scaled. Teachers are not scaled when "
            "they teach."
        ),
    )
    p.add_argument("run", help="run folder (train or distill) with held-out clips")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    # imported here: the CLI imports every command module to build its parser, without torch
    from egodistill.engine.calibration import calibration_lines
    from egodistill.pipelines.calibrate import run_calibrate
    from egodistill.pipelines.run_dir import is_main_process

    record = run_calibrate(args.run, progress=not args.no_progress)
    if is_main_process():
        print("\n".join(calibration_lines(record)))
        print(f"wrote {args.run}/calibration.json ({record['clips']} held-out clips); evaluate, predict and export "
              f"now use these temperatures")
    return 0
