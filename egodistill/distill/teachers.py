"""Teachers from run folders: loading, head checks, the shared held-out split, dataset weights,
and the ensemble of a finished distillation run as a predictor for `egodistill evaluate`."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from egodistill.config import Config
from egodistill.data.records import DatasetInfo
from egodistill.distill.ensemble import EnsembleTeacher, ModelTeacher
from egodistill.distill.weighting import dataset_weights

DATASET_WEIGHTS_FILE = "dataset_weights.json"
CALIBRATION_FILE = "ensemble_calibration.json"


@dataclass
class TeacherRun:
    """A trained teacher: its run folder, resolved config, frozen model and dataset info."""

    run_dir: Path
    cfg: Config
    teacher: ModelTeacher
    info: DatasetInfo

    @property
    def modality(self) -> str:
        return self.cfg.model.modality

    @property
    def heads(self) -> dict[str, int]:
        """Return {head: classes} the teacher's model outputs."""
        from egodistill.engine.checkpoint import model_heads

        return model_heads(self.cfg, self.info)


def load_teachers(run_dirs: list[str]) -> list[TeacherRun]:
    """Return every teacher rebuilt from its own resolved config and best weights, frozen."""
    from egodistill.engine.checkpoint import load_run

    if not run_dirs:
        raise ValueError("distill.teachers is empty: give the run folders of the trained teachers")
    runs = []
    for d in run_dirs:
        path = Path(d)
        if not path.is_dir():
            raise FileNotFoundError(f"teacher run folder not found: {path} (distill.teachers)")
        cfg, model, info = load_run(path)
        runs.append(TeacherRun(path, cfg, ModelTeacher(model, cfg.model, name=str(path)), info))
    return runs


def check_heads(teachers: list[TeacherRun], student_heads: dict[str, int]) -> None:
    """Raise ValueError when a teacher lacks a student head or has another class count for it."""
    for t in teachers:
        theads = t.heads
        for h, n in student_heads.items():
            if h not in theads:
                raise ValueError(
                    f"teacher {t.run_dir} has no head '{h}' (its heads: {', '.join(sorted(theads))}); "
                    f"the student's heads are {', '.join(sorted(student_heads))}")
            if theads[h] != n:
                raise ValueError(
                    f"class-count mismatch for head '{h}': teacher {t.run_dir} has {theads[h]} classes, "
                    f"the student has {n}")


def shared_heldout_ids(teachers: list[TeacherRun]) -> list[str]:
    """Return the held-out ids recorded by the first teacher (the RGB teacher in the paper's
    configs); raises when another teacher recorded a different held-out split."""
    from egodistill.engine.heldout import read_heldout_ids

    ids = read_heldout_ids(teachers[0].run_dir)
    for t in teachers[1:]:
        other = read_heldout_ids(t.run_dir)
        if set(other) != set(ids):
            only_first = sorted(set(ids) - set(other))[:3]
            only_other = sorted(set(other) - set(ids))[:3]
            raise ValueError(
                f"teachers {teachers[0].run_dir} and {t.run_dir} were trained with different held-out splits "
                f"({len(ids)} vs {len(other)} held-out samples; only in the first: {only_first}, only in the other: "
                f"{only_other}): the dataset weights need samples none of the teachers trained on. Train the teachers "
                f"with the same data.heldout_fraction and train.seed")
    return ids


def heldout_teacher_logits(teachers: list[TeacherRun], loader, heads: list[str], device: torch.device | str = "cpu",
                           progress: bool = False) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
    """Return (each teacher's logits {head: [M, C]} averaged over views, in teacher order; the
    labels {head: [M]}, -1 where unknown) on `loader` (the held-out split), in one pass."""
    from egodistill.engine.evaluate import predict_logits

    def every_teacher(batch: dict) -> dict[str, Tensor]:  # {"<teacher>/<head>": [B*V, C]}
        out = {}
        for i, t in enumerate(teachers):
            z = t.teacher(batch)
            out.update({f"{i}/{h}": z[h] for h in heads})
        return out

    flat, _, labels = predict_logits(every_teacher, loader, progress=progress, desc="teachers on held-out",
                                     device=device, return_labels=True)
    logits = [{h: flat[f"{i}/{h}"] for h in heads} for i in range(len(teachers))]
    return logits, {h: labels[h] for h in heads}


def dataset_weights_record(teachers: list[TeacherRun], logits: list[dict[str, Tensor]], labels: dict[str, Tensor],
                           tau: float) -> dict[str, Any]:
    """Return the record of the dataset-level weights: {"teachers", "modalities", "tau",
    "samples", "mean_ce": {head: [N]}, "weights": {head: [N]}} from the teachers' held-out
    `logits` and `labels` (`heldout_teacher_logits`)."""
    from egodistill.distill.weighting import per_teacher_ce

    weights = dataset_weights(logits, labels, tau)
    mean_ce = {}
    for h in labels:
        known = labels[h] >= 0
        mean_ce[h] = per_teacher_ce([{h: z[h][known]} for z in logits], {h: labels[h][known]}, h).mean(1).tolist()
    return {
        "teachers": [str(t.run_dir) for t in teachers],
        "modalities": [t.modality for t in teachers],
        "tau": tau,
        "samples": int(len(next(iter(labels.values())))),
        "mean_ce": mean_ce,
        "weights": {h: w.tolist() for h, w in weights.items()},
    }


def compute_dataset_weights(teachers: list[TeacherRun], loader, heads: list[str], tau: float,
                            device: torch.device | str = "cpu", progress: bool = False) -> dict[str, Any]:
    """Return `dataset_weights_record` of the teachers run on `loader` (held-out)."""
    logits, labels = heldout_teacher_logits(teachers, loader, heads, device, progress)
    return dataset_weights_record(teachers, logits, labels, tau)


def ensemble_calibration_record(teachers: list[TeacherRun], ensemble: EnsembleTeacher,
                                logits: list[dict[str, Tensor]], labels: dict[str, Tensor]) -> dict[str, Any]:
    """Return the record of the ensemble's held-out calibration: {"teachers", "samples",
    "temperature": {head: T}, "nll": {head: [before, after]}, "ece": {head: [before, after]}}
    for `ensemble` (its weights, no temperatures yet) on the teachers' held-out `logits`."""
    from egodistill.engine.calibration import calibration_record

    combined = ensemble.combine_teachers(logits, {"labels": labels})
    return {"teachers": [str(t.run_dir) for t in teachers], "samples": int(len(next(iter(labels.values())))),
            **calibration_record(combined, labels)}


def read_dataset_weights(run_dir: Path, teachers: list[str] | None = None,
                         heads: list[str] | None = None) -> dict[str, Tensor]:
    """Return {head: [N]} from `run_dir/dataset_weights.json`, checking it names `teachers` and
    has weights for every one of `heads`."""
    from egodistill.engine.checkpoint import read_json

    path = Path(run_dir) / DATASET_WEIGHTS_FILE
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("weights"), dict):
        raise ValueError(f"{path}: not a dataset weights record (no 'weights')")
    if teachers is not None and [str(t) for t in teachers] != data.get("teachers"):
        raise ValueError(f"{path}: weights were computed for teachers {data.get('teachers')}, not {teachers}")
    n = len(data.get("teachers") or [])
    for h, w in data["weights"].items():
        if not (isinstance(w, list) and len(w) == n and all(isinstance(x, (int, float)) for x in w)):
            raise ValueError(f"{path}: weights of head '{h}' must be a list of {n} numbers (one per teacher), got {w!r}")
    missing = [h for h in heads or [] if h not in data["weights"]]
    if missing:
        raise ValueError(f"{path}: no weights for head(s) {', '.join(missing)} (it has "
                         f"{', '.join(data['weights']) or 'none'}); delete the file to compute them again")
    return {h: torch.tensor(w, dtype=torch.float32) for h, w in data["weights"].items()}


def read_ensemble_temperatures(run_dir: Path, teachers: list[str] | None = None) -> dict[str, float]:
    """Return {head: T} from `run_dir/ensemble_calibration.json`, checking it names `teachers`."""
    from egodistill.engine.checkpoint import read_json

    path = Path(run_dir) / CALIBRATION_FILE
    data = read_json(path)
    temps = data.get("temperature") if isinstance(data, dict) else None
    if not isinstance(temps, dict) or not all(isinstance(t, (int, float)) and t > 0 for t in temps.values()):
        raise ValueError(f"{path}: not an ensemble calibration record (expected 'temperature': {{head: T > 0}})")
    if teachers is not None and [str(t) for t in teachers] != data.get("teachers"):
        raise ValueError(f"{path}: the temperatures were fitted for teachers {data.get('teachers')}, not {teachers}")
    return {h: float(t) for h, t in temps.items()}


def load_ensemble(run_dir: str | os.PathLike) -> tuple[EnsembleTeacher, list[str], Config]:
    """Return (ensemble, modalities it reads, the run's config) of distillation run `run_dir`.

    The ensemble uses the run's dataset weights (`dataset_weights.json`) when it has them; a
    run with `uniform` or `per-sample` weighting is evaluated with uniform weights, since
    per-sample weights need the labels. A run with `distill.calibrate` divides the logits by its
    fitted temperatures (`ensemble_calibration.json`) where its weighting is the one evaluated.
    """
    from egodistill.config import load_config

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path}: not a run folder (no config.yaml)")
    cfg = load_config(cfg_path)
    if not cfg.distill.teachers:
        raise ValueError(f"{run_dir} is not a distillation run (its distill.teachers is empty)")
    runs = load_teachers(cfg.distill.teachers)
    heads = [h for h, n in (dict(cfg.model.heads) or runs[0].heads).items() if n > 0]
    names = [str(r.run_dir) for r in runs]
    weights = read_dataset_weights(run_dir, names) if (run_dir / DATASET_WEIGHTS_FILE).is_file() else None
    weighting = "dataset" if weights is not None else "uniform"
    # The temperatures were fitted on the combination the student learned from; they apply to
    # that combination only (not to uniform weights standing in for per-sample ones).
    temperatures = None
    if (run_dir / CALIBRATION_FILE).is_file() and weighting == cfg.distill.weighting:
        temperatures = read_ensemble_temperatures(run_dir, names)
    ensemble = EnsembleTeacher([r.teacher for r in runs], weighting, cfg.distill.tau, weights=weights, heads=heads,
                               temperatures=temperatures)
    return ensemble, list(dict.fromkeys(r.modality for r in runs)), cfg


def load_predictor(run_dir: str | os.PathLike) -> tuple[Callable[[dict], dict[str, Tensor]], list[str]]:
    """Return (predictor, modalities) of the teacher ensemble of distillation run `run_dir`:
    `predictor(batch) -> {head: [B*V, C]}` reading every teacher's modality from the batch."""
    ensemble, modalities, _ = load_ensemble(run_dir)
    return ensemble, modalities

