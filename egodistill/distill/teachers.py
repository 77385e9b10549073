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


def compute_dataset_weights(teachers: list[TeacherRun], loader, heads: list[str], tau: float,
                            device: torch.device | str = "cpu", progress: bool = False) -> dict[str, Any]:
    """Return the record of the dataset-level weights: {"teachers", "modalities", "tau",
    "samples", "mean_ce": {head: [N]}, "weights": {head: [N]}} computed on `loader` (held-out)."""
    from egodistill.distill.weighting import per_teacher_ce
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
    labels = {h: labels[h] for h in heads}
    weights = dataset_weights(logits, labels, tau)
    mean_ce = {}
    for h in heads:
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


def read_dataset_weights(run_dir: Path, teachers: list[str] | None = None) -> dict[str, Tensor]:
    """Return {head: [N]} from `run_dir/dataset_weights.json`, checking it names `teachers`."""
    from egodistill.engine.checkpoint import read_json

    path = Path(run_dir) / DATASET_WEIGHTS_FILE
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("weights"), dict):
        raise ValueError(f"{path}: not a dataset weights record (no 'weights')")
    if teachers is not None and [str(t) for t in teachers] != data.get("teachers"):
        raise ValueError(f"{path}: weights were computed for teachers {data.get('teachers')}, not {teachers}")
    return {h: torch.tensor(w, dtype=torch.float32) for h, w in data["weights"].items()}


def load_ensemble(run_dir: str | os.PathLike) -> tuple[EnsembleTeacher, list[str], Config]:
    """Return (ensemble, modalities it reads, the run's config) of distillation run `run_dir`.

    The ensemble uses the run's dataset weights (`dataset_weights.json`) when it has them; a
    run with `uniform` or `per-sample` weighting is evaluated with uniform weights, since
    per-sample weights need the labels.
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
    weights_file = run_dir / DATASET_WEIGHTS_FILE
    if weights_file.is_file():
        ensemble = EnsembleTeacher([r.teacher for r in runs], "dataset", cfg.distill.tau,
                                   weights=read_dataset_weights(run_dir, [str(r.run_dir) for r in runs]), heads=heads)
    else:
        ensemble = EnsembleTeacher([r.teacher for r in runs], "uniform", heads=heads)
    return ensemble, list(dict.fromkeys(r.modality for r in runs)), cfg


def load_predictor(run_dir: str | os.PathLike) -> tuple[Callable[[dict], dict[str, Tensor]], list[str]]:
    """Return (predictor, modalities) of the teacher ensemble of distillation run `run_dir`:
    `predictor(batch) -> {head: [B*V, C]}` reading every teacher's modality from the batch."""
    ensemble, modalities, _ = load_ensemble(run_dir)
    return ensemble, modalities

