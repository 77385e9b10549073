"""`egodistill evaluate RUN [--split S] [key=value ...]`: metrics of a trained run on a split.

K clips x C crops per sample (data.test_clips, data.test_crops), logits averaged over the views;
EPIC verb / noun / action top-1 and top-5, tail classes, unseen participants; SSv2 top-1 / top-5;
95% intervals; ECE with a reliability diagram; a confusion matrix; per-sample logits saved; and
with --export-epic the EPIC-KITCHENS-100 challenge submission JSON.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

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
    p.add_argument("--no-plots", action="store_true", help="skip the reliability and confusion figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    metrics = run_evaluate(args.run, split=args.split, overrides=args.overrides, weights=args.weights,
                           teachers=args.teachers, export_epic=args.export_epic, plots=not args.no_plots,
                           progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        from egodistill.engine.evaluate import format_metrics

        print(format_metrics(metrics))
    return 0


def check_output_file(path: Path, what: str) -> None:
    """Raise unless a file can be written at `path`: not a folder, under a folder (or one that
    can be made) that is writable."""
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder; give a file name, e.g. {path / 'submission.json'}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"{what} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {path}: the folder {parent} is not writable")


def run_evaluate(run: str | os.PathLike, *, split: str | None = None, overrides: list[str] | None = None,
                 weights: str = "best", teachers: bool = False, export_epic: str | None = None, plots: bool = True,
                 progress: bool = True) -> dict[str, Any]:
    """Evaluate run folder `run` on `split`; returns the metrics (also written to the run folder)."""
    import torch

    from egodistill.config import apply_overrides, config_from_dict, config_to_dict, load_config
    from egodistill.data.annotations import build_reader
    from egodistill.data.dataset import build_dataset
    from egodistill.engine.checkpoint import LAST_DIR, WEIGHTS_FILE, load_run, model_heads
    from egodistill.engine.evaluate import (
        append_jsonl,
        check_model_heads,
        count_nonfinite,
        epic_submission,
        evaluate_dataset,
        evaluation_plots,
        ModelPredictor,
        save_predictions,
        write_json,
    )
    from egodistill.engine.trainer import METRICS_FILE, make_accelerator

    run_dir = Path(run)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder not found: {run_dir}")
    if export_epic:
        check_output_file(Path(export_epic), "--export-epic")  # before the evaluation, not after
    if teachers:
        from egodistill.distill.teachers import load_predictor

        cfg = load_config(run_dir / "config.yaml")
        predictor, modalities = load_predictor(run_dir)
        model = predictor
        heads = None
        tag = "_teachers"
    else:
        weights_path = run_dir / LAST_DIR / WEIGHTS_FILE if weights == "last" else None
        cfg, model, run_info = load_run(run_dir, weights=weights_path)
        heads = model_heads(cfg, run_info)
        modalities = [cfg.model.modality]
        tag = "" if weights == "best" else "_last"
    if overrides:
        cfg = config_from_dict(apply_overrides(config_to_dict(cfg), overrides))
    split = split or cfg.data.eval_split
    reader = build_reader(cfg)
    info = reader.info()
    if heads is not None:
        check_model_heads(heads, info, what=f"model of run {run_dir}")
    samples = reader.samples(split)
    dataset = build_dataset(cfg, split, train=False, samples=samples, modalities=modalities)
    accelerator = make_accelerator(cfg)
    model.to(accelerator.device)
    model.eval()
    predictor = model if teachers else ModelPredictor(model, cfg.model)
    with torch.no_grad():
        metrics, logits, ids = evaluate_dataset(predictor, dataset, cfg, info, accelerator, progress=progress,
                                                desc=f"evaluate {split}")
    bad = count_nonfinite(logits)
    if bad and accelerator.is_main_process:
        import sys

        print(f"warning: the model gives NaN or infinite logits for {bad} of {len(ids)} samples of {split} "
              f"(weights from a diverged training?); they count as wrong", file=sys.stderr)
    if accelerator.is_main_process:
        pred_dir = run_dir / "predictions"
        save_predictions(pred_dir / f"{split}{tag}.safetensors", logits, ids)
        write_json(pred_dir / f"{split}{tag}_metrics.json", metrics, indent=1)
        append_jsonl(run_dir / METRICS_FILE, {"kind": "eval", "split": split + tag, "weights": weights,
                                              "clips": cfg.data.test_clips, "crops": cfg.data.test_crops, **metrics})
        if plots and metrics.get("num_samples", 0) > 0:
            by_id = {s.id: s for s in samples}
            evaluation_plots(run_dir / "plots", split + tag, logits, [by_id[i] for i in ids], info)
        if export_epic:
            write_json(export_epic, epic_submission(logits, ids))
            print(f"wrote the EPIC submission for {len(ids)} segments to {export_epic}")
    accelerator.wait_for_everyone()
    return metrics
