"""`egodistill evaluate RUN [--split S] [key=value ...]`: metrics of a trained run on a split.

Parses the arguments and calls `egodistill.pipelines.evaluate.run_evaluate`.
"""
from __future__ import annotations

import argparse

from egodistill.pipelines.evaluate import run_evaluate
from egodistill.pipelines.run_dir import is_main_process

ORDER = 50


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a trained run (or a distillation run's teacher ensemble) on a split",
        description=(
            "Evaluate the best weights of run folder RUN on a split of its dataset (default: data.eval_split). "
            "Overrides (key=value) change the run's config for this evaluation, e.g. data.test_clips=10 or "
            "another dataset's annotation files. Writes predictions/<split>.safetensors (per-sample logits), "
            "predictions/<split>_metrics.json, plots/reliability_*.png and plots/confusion_*.png, and appends "
            "to metrics.jsonl. Run with torchrun for several processes; every sample counts once."
        ),
    )
    p.add_argument("run", help="run folder (holds config.yaml, info.json, model.safetensors)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides of the run's config")
    p.add_argument("--split", default=None, help="annotation split (default: the run's data.eval_split)")
    p.add_argument("--weights", choices=["best", "last"], default="best",
                   help="best: model.safetensors (held-out selection); last: last/model.safetensors")
    p.add_argument("--teachers", action="store_true",
                   help="evaluate a distillation run's teacher ensemble instead of its student")
    p.add_argument("--export-epic", metavar="JSON", default=None,
                   help="also write the EPIC-KITCHENS-100 action recognition submission to this file")
    p.add_argument("--uncalibrated", action="store_true",
                   help="ignore the run's calibration.json (egodistill calibrate): evaluate the raw logits "
                        "(files tagged _uncalibrated)")
    p.add_argument("--no-plots", action="store_true", help="skip the reliability and confusion figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    metrics = run_evaluate(args.run, split=args.split, overrides=args.overrides, weights=args.weights,
                           teachers=args.teachers, export_epic=args.export_epic, plots=not args.no_plots,
                           progress=not args.no_progress, calibrated=not args.uncalibrated)
    if is_main_process():
        from egodistill.engine.evaluate import format_metrics

        print(format_metrics(metrics))
    return 0
