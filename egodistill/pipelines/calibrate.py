"""`egodistill calibrate RUN`: fit a trained model's per-head temperatures on its held-out clips.

The held-out clips are the training videos the run kept out of training (`heldout.json`: they
chose its best epoch). Their test-view logits give one temperature per head, the one minimising
the negative log-likelihood (`engine.calibration`); `calibration.json` records it with the digest
of the weights it was fitted for. `evaluate`, `predict` and `export` then divide the model's
logits by it (folded into the linear heads), which changes confidences and never a head's top-1.
A head with no label among the held-out clips is left as it is.
A run used as a teacher is never scaled: teachers are calibrated as an ensemble
(`distill.calibrate`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def run_calibrate(run: str | os.PathLike, *, progress: bool = True) -> dict[str, Any]:
    """Fit and write `RUN/calibration.json` for the run's best weights; return its record
    (`engine.calibration.model_calibration_record`)."""
    import torch

    from egodistill.atomic import write_json
    from egodistill.data.annotations import build_reader
    from egodistill.data.dataset import build_dataset
    from egodistill.engine.calibration import MODEL_CALIBRATION_FILE, model_calibration_record, weights_digest
    from egodistill.engine.checkpoint import WEIGHTS_FILE, load_run
    from egodistill.engine.evaluate import ModelPredictor, evaluate_dataset
    from egodistill.engine.heldout import HELDOUT_FILE, read_heldout_ids, split_by_ids
    from egodistill.engine.trainer import make_accelerator

    run_dir = Path(run)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder not found: {run_dir}")
    if not (run_dir / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{run_dir / WEIGHTS_FILE}: the run has no weights yet (was it trained to its "
                                f"first evaluation?)")
    # the digest before the weights are read: should training replace them meanwhile, the record
    # names the older file and is never applied to the newer one
    digest = weights_digest(run_dir / WEIGHTS_FILE)
    cfg, model, info = load_run(run_dir)
    reader = build_reader(cfg)
    _, heldout = split_by_ids(reader.samples(cfg.data.train_split), read_heldout_ids(run_dir),
                              str(run_dir / HELDOUT_FILE))
    if not heldout:
        raise ValueError(f"{run_dir}: the run held out no clips (data.heldout_fraction "
                         f"{cfg.data.heldout_fraction}); temperatures must be fitted on clips the model did not "
                         f"train on")
    dataset = build_dataset(cfg, cfg.data.train_split, train=False, samples=heldout, modalities=[cfg.model.modality])
    accelerator = make_accelerator(cfg)
    model.to(accelerator.device)
    with torch.no_grad():
        _, logits, ids = evaluate_dataset(ModelPredictor(model, cfg.model), dataset, cfg, info, accelerator,
                                          progress=progress, desc="calibrate (held-out)")
    by_id = {s.id: s for s in heldout}
    labels = {h: torch.tensor([by_id[i].labels.get(h, -1) for i in ids], dtype=torch.long) for h in logits}
    labelled = [h for h in logits if bool((labels[h] >= 0).any())]
    if not labelled:
        raise ValueError(f"{run_dir}: none of the {len(ids)} held-out clips has a label for any head "
                         f"({', '.join(logits)}); nothing to fit")
    record = model_calibration_record({h: logits[h].float() for h in labelled}, {h: labels[h] for h in labelled},
                                      digest, len(ids))
    if accelerator.is_main_process:
        write_json(run_dir / MODEL_CALIBRATION_FILE, record)
    accelerator.wait_for_everyone()
    return record

