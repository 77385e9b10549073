"""Evaluating a trained run (or a distillation run's teacher ensemble) on a split.

K clips x C crops per sample (data.test_clips, data.test_crops), logits averaged over the views;
EPIC verb / noun / action top-1 and top-5, tail classes, unseen participants; SSv2 top-1 / top-5;
95% intervals; ECE with a reliability diagram; a confusion matrix; per-sample logits saved; and
optionally the EPIC-KITCHENS-100 challenge submission JSON. `egodistill evaluate` parses its
arguments and calls `run_evaluate`.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from egodistill.atomic import nearest_existing
from egodistill.config import Config

if TYPE_CHECKING:  # the command line imports this module; torch loads only when an evaluation starts
    from torch import Tensor

    from egodistill.data.records import DatasetInfo, Sample


def check_output_file(path: Path, what: str) -> None:
    """Raise unless a file can be written at `path`: not a folder, under a folder (or one that
    can be made) that is writable."""
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder; give a file name, e.g. {path / 'submission.json'}")
    parent = nearest_existing(path.parent)
    if not parent.is_dir():
        raise NotADirectoryError(f"{what} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {path}: the folder {parent} is not writable")


def run_evaluate(run: str | os.PathLike, *, split: str | None = None, overrides: list[str] | None = None,
                 weights: str = "best", teachers: bool = False, export_epic: str | None = None, plots: bool = True,
                 progress: bool = True, calibrated: bool = True) -> dict[str, Any]:
    """Evaluate run folder `run` on `split` (default: the run's data.eval_split) and return the
    metrics (`engine.evaluate.evaluate_dataset`'s dict).

    `weights`: "best" (model.safetensors) or "last" (last/model.safetensors); `teachers`: a
    distillation run's teacher ensemble instead of its student; `overrides`: key=value changes
    of the run's config for this evaluation. Writes predictions/<split><tag>.safetensors and
    _metrics.json, a metrics.jsonl line, the plots (`plots`) and the EPIC submission JSON
    (`export_epic`) from the main process."""
    import torch

    from egodistill.config import apply_overrides, config_from_dict, config_to_dict
    from egodistill.data.annotations import build_reader
    from egodistill.data.dataset import build_dataset
    from egodistill.engine.evaluate import ModelPredictor, check_model_heads, evaluate_dataset
    from egodistill.engine.trainer import make_accelerator

    run_dir = Path(run)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder not found: {run_dir}")
    if export_epic:
        check_output_file(Path(export_epic), "--export-epic")  # before the evaluation, not after
    cfg, model, heads, modalities, tag, temps = _load_evaluated(run_dir, weights, teachers, calibrated)
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
    if temps:
        metrics.update(_uncalibrated_ece(logits, ids, samples, info, temps))
    if accelerator.is_main_process:
        _write_outputs(run_dir, cfg, split, tag, weights, metrics, logits, ids, samples, info, plots=plots,
                       export_epic=export_epic)
    accelerator.wait_for_everyone()
    return metrics


def _load_evaluated(run_dir: Path, weights: str, teachers: bool, calibrated: bool
                    ) -> tuple[Config, Any, dict[str, int] | None, list[str], str, dict[str, float]]:
    """Return (config, model or teacher-ensemble predictor, the model's heads or None for the
    ensemble, the modalities it reads, the tag of its output files ("", "_last" or "_teachers";
    "_uncalibrated" added when a calibrated run is evaluated without its temperatures), the
    temperatures folded into the model: {} when none)."""
    from egodistill.config import load_config
    from egodistill.engine.calibration import MODEL_CALIBRATION_FILE, apply_run_calibration
    from egodistill.engine.checkpoint import LAST_DIR, WEIGHTS_FILE, load_run, model_heads

    if teachers:
        from egodistill.distill.teachers import load_predictor

        cfg = load_config(run_dir / "config.yaml")
        predictor, modalities = load_predictor(run_dir)
        return cfg, predictor, None, modalities, "_teachers", {}
    weights_path = run_dir / LAST_DIR / WEIGHTS_FILE if weights == "last" else None
    cfg, model, run_info = load_run(run_dir, weights=weights_path)
    tag = "" if weights == "best" else "_last"
    if calibrated:
        temps = apply_run_calibration(model, run_dir, weights_path)
    else:
        temps = {}
        if (run_dir / MODEL_CALIBRATION_FILE).is_file():
            tag += "_uncalibrated"  # beside, not over, the calibrated evaluation's files
    return cfg, model, model_heads(cfg, run_info), [cfg.model.modality], tag, temps


def _uncalibrated_ece(logits: dict[str, Tensor], ids: list[str], samples: list[Sample], info: DatasetInfo,
                      temps: dict[str, float]) -> dict[str, float]:
    """Return {"temperature_<head>": T, "<key>_uncalibrated": ECE} for each ECE of the logits
    before the temperatures `temps` divided them."""
    from egodistill.engine.metrics import compute_metrics

    by_id = {s.id: s for s in samples}
    raw = compute_metrics({h: z * temps.get(h, 1.0) for h, z in logits.items()}, [by_id[i] for i in ids], info)
    out = {f"temperature_{h}": t for h, t in temps.items()}
    out.update({f"{k}_uncalibrated": v for k, v in raw.items() if k.endswith("_ece")})
    return out


def _write_outputs(run_dir: Path, cfg: Config, split: str, tag: str, weights: str, metrics: dict[str, Any],
                   logits: dict[str, Tensor], ids: list[str], samples: list[Sample], info: DatasetInfo, *,
                   plots: bool, export_epic: str | None) -> None:
    """Write an evaluation's files into `run_dir` (predictions, metrics, plots) and the EPIC
    submission; warn on stderr about samples with non-finite logits (they count as wrong)."""
    from egodistill.atomic import write_json
    from egodistill.engine.evaluate import (
        append_jsonl,
        count_nonfinite,
        epic_submission,
        evaluation_plots,
        save_predictions,
    )
    from egodistill.engine.trainer import METRICS_FILE

    bad = count_nonfinite(logits)
    if bad:
        print(f"warning: the model gives NaN or infinite logits for {bad} of {len(ids)} samples of {split} "
              f"(weights from a diverged training?); they count as wrong", file=sys.stderr)
    pred_dir = run_dir / "predictions"
    save_predictions(pred_dir / f"{split}{tag}.safetensors", logits, ids)
    write_json(pred_dir / f"{split}{tag}_metrics.json", metrics, allow_nan=False)  # standard JSON
    append_jsonl(run_dir / METRICS_FILE, {"kind": "eval", "split": split + tag, "weights": weights,
                                          "clips": cfg.data.test_clips, "crops": cfg.data.test_crops, **metrics})
    if plots and metrics.get("num_samples", 0) > 0:
        by_id = {s.id: s for s in samples}
        evaluation_plots(run_dir / "plots", split + tag, logits, [by_id[i] for i in ids], info)
    if export_epic:
        Path(export_epic).parent.mkdir(parents=True, exist_ok=True)
        write_json(export_epic, epic_submission(logits, ids), indent=None, allow_nan=False)
        print(f"wrote the EPIC submission for {len(ids)} segments to {export_epic}")
