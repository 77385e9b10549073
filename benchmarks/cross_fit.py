"""Cross-fitted teachers on the demo's data: does a student distilled from out-of-fold teacher
logits beat the demo's student on the same labelled clips?

On its own training clips the demo's ensemble mostly repeats the labels, because every teacher
trained on those clips (docs/distillation.md, "A layout teacher that knows the shape"). Here the
training videos (less the held-out split) are cut into K folds by video; each of the ensemble's
four teachers is trained again K times, each copy without one fold (same architecture, epochs and
recipe as the demo's teacher). The teacher cache is then built with, for every training clip,
the ensemble of the copies that never saw it, with the demo's dataset weights, views and cache
fingerprint, and a student is distilled from it exactly as the demo's student is.

    python benchmarks/cross_fit.py --out runs/cross_fit [--seeds 0 1] [--folds 2]

Prints, per seed, validation top-1 and ECE (action, x100) of the RGB baseline, the demo's
student, the cross-fitted student and the fold teachers, and how often the cached targets name
the true class on the training views (with the mean probability they give it). Finished runs
are reused.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import numpy as np
import torch

import egodistill.engine.heldout as heldout_module
from distill_recipe import metrics
from egodistill.config import load_config
from egodistill.demo import DemoSettings, distill_student, make_dataset, run_config, train_models

HEADS = ("verb", "noun")


def fold_split(fold: int, folds: int):
    """Return a `split_heldout` that also holds out fold `fold` of `folds` of the training videos
    (videos ordered by a seeded hash, every `folds`-th one to a fold)."""
    plain = heldout_module.split_heldout

    def split(samples, fraction, seed):
        train, held = plain(samples, fraction, seed)
        videos = sorted({s.video_id for s in train}, key=lambda v: heldout_module._video_key(1000 + seed, v))
        out = set(videos[fold::folds])
        return [s for s in train if s.video_id not in out], held + [s for s in train if s.video_id in out]

    return split


def train_fold_teachers(base, runs: Path, teachers: list[Path], folds: int) -> list[list[Path]]:
    """Train every teacher once per fold, without that fold; return the run folders per fold."""
    from egodistill.pipelines.train import run_train

    per_fold = []
    for k in range(folds):
        runs_k = []
        for t in teachers:
            run = runs / f"fold{k}_{t.name}"
            runs_k.append(run)
            if (run / "model.safetensors").is_file():
                continue
            tc = load_config(t / "config.yaml")
            cfg = run_config(base, run, tc.model.modality, tc.model.arch, tc.train.epochs)
            cfg.train.select_metric = tc.train.select_metric
            plain, heldout_module.split_heldout = heldout_module.split_heldout, fold_split(k, folds)
            try:
                print(f"train {run.name} (without fold {k} of {folds})", flush=True)
                run_train(cfg, progress=False)
            finally:
                heldout_module.split_heldout = plain
        per_fold.append(runs_k)
    return per_fold


class CrossFitEnsemble(torch.nn.Module):
    """Routes each clip of a batch to the ensemble of the fold whose teachers never trained on it.

    Every fold's ensemble runs on the whole batch and the right rows are kept: K times the
    teachers' work for the cache, which is built once per seed (a measurement, not a hot path)."""

    def __init__(self, ensembles: list, owner: dict[str, int], heads: list[str]):
        super().__init__()
        self.ensembles, self.owner, self.heads = ensembles, owner, heads

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        outs = [e(batch) for e in self.ensembles]
        fold = torch.tensor([self.owner[i] for i in batch["id"]])
        rows = torch.arange(len(fold))
        return {h: torch.stack([o[h] for o in outs])[fold, rows] for h in self.heads}


def build_cross_fit_cache(base, runs: Path, teachers: list[Path], per_fold: list[list[Path]], s: DemoSettings) -> Path:
    """Build the cross-fitted cache beside the demo student's one (same views, weights and fingerprint)."""
    from egodistill.data.annotations import build_reader
    from egodistill.data.dataset import MultimodalDataset
    from egodistill.distill.cache import TeacherCache
    from egodistill.distill.data import build_cache
    from egodistill.distill.ensemble import EnsembleTeacher
    from egodistill.distill.teachers import load_teachers, read_dataset_weights
    from egodistill.engine.heldout import read_heldout_ids, split_by_ids

    path = runs / "teacher_cache_cross_fit.h5"
    if path.is_file():
        return path
    full = TeacherCache(runs / "teacher_cache.h5")
    weights = read_dataset_weights(runs / "student", [str(t) for t in teachers])
    ensembles, owner = [], {}
    for k, runs_k in enumerate(per_fold):
        loaded = load_teachers([str(r) for r in runs_k])
        ensembles.append(EnsembleTeacher([t.teacher for t in loaded], "dataset", s.tau, weights=weights,
                                         heads=list(full.heads)))
        for i in set(read_heldout_ids(runs_k[0])) & set(full.ids):
            owner.setdefault(i, k)
    cfg = run_config(base, runs / "student", "rgb", s.students[0], s.student_epochs)
    samples, _ = split_by_ids(build_reader(cfg).samples(cfg.data.train_split), read_heldout_ids(teachers[0]))
    if [x.id for x in samples] != full.ids or not all(i in owner for i in full.ids):
        raise ValueError(f"{runs}: the demo student's cache and the fold teachers' held-out splits do not "
                         f"cover the same training clips; delete the fold runs and run again")
    modalities = list(dict.fromkeys(load_config(t / "config.yaml").model.modality for t in teachers))
    data = MultimodalDataset(cfg, samples, modalities, train=True)
    build_cache(path, data, CrossFitEnsemble(ensembles, owner, list(full.heads)), full.views, full.fingerprint,
                full.heads, seed=cfg.train.seed, batch_size=cfg.train.eval_batch_size, progress=False)
    return path


def target_quality(cache_path: Path, base) -> dict[str, tuple[float, float]]:
    """Return {head: (% of cached training views whose top class is the label, mean p(label))}."""
    from egodistill.data.annotations import build_reader
    from egodistill.distill.cache import TeacherCache

    cache = TeacherCache(cache_path)
    labels = {s.id: s.labels for s in build_reader(base).samples(base.data.train_split)}
    out = {}
    with h5py.File(cache_path, "r") as f:
        for h in HEADS:
            logits = torch.tensor(np.asarray(f[f"logits/{h}"][()], dtype=np.float32))
            y = torch.tensor(np.repeat([labels[i][h] for i in cache.ids], cache.views))
            p = logits.softmax(-1)[torch.arange(len(y)), y]
            out[h] = (float((logits.argmax(1) == y).float().mean() * 100), float(p.mean()))
    return out


def run_seed(out: Path, seed: int, folds: int) -> dict:
    s = DemoSettings(unlabelled_factor=0)
    base = make_dataset(out / "synth", s, seed, quick=False, workers=2, progress=False)
    runs = out / "runs"
    teachers = train_models(base, runs, s, progress=False)
    if not (runs / "student" / "model.safetensors").is_file():
        distill_student(base, runs, "student", s.students[0], teachers, s, progress=False)
    per_fold = train_fold_teachers(base, runs, teachers, folds)
    cache = build_cross_fit_cache(base, runs, teachers, per_fold, s)
    if not (runs / "student_cross_fit" / "model.safetensors").is_file():
        distill_student(base, runs, "student_cross_fit", s.students[0], teachers, s, cache_path=cache, progress=False)
    result = {"models": {}, "targets": {"demo": target_quality(runs / "teacher_cache.h5", base),
                                        "cross_fit": target_quality(cache, base)}}
    for run in [runs / "rgb_baseline", runs / "student", runs / "student_cross_fit", *sum(per_fold, [])]:
        result["models"][run.name] = metrics(run)  # a finished evaluation is reused
    (out / "cross_fit.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/cross_fit"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--folds", type=int, default=2)
    args = p.parse_args(argv)
    for seed in args.seeds:
        r = run_seed(args.out / f"seed_{seed}", seed, args.folds)
        print(f"\nseed {seed}, {args.folds} folds; validation split; top-1 and ECE x100 (action)\n")
        print("| run | verb | noun | action | ECE |\n|---|---|---|---|---|")
        for name, m in r["models"].items():
            print(f"| {name} | {m['verb_top1']:.1f} | {m['noun_top1']:.1f} | {m['action_top1']:.1f} | "
                  f"{m['ece']:.1f} |")
        print("\ncached targets on the training views: % naming the label (mean p(label))")
        for kind, q in r["targets"].items():
            print(f"  {kind}: " + ", ".join(f"{h} {q[h][0]:.1f} % ({q[h][1]:.2f})" for h in HEADS))


if __name__ == "__main__":
    main()
