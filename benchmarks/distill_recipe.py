"""Sweep the distillation recipe on the demo's data over seeds: label-loss weight, KD temperature,
cached views per sample, student and teacher epochs, the weighting temperature and feature matching.

For each seed the demo's dataset, RGB baseline (= the RGB teacher) and flow / audio / layout
teachers are made once (`egodistill.demo` stages, its default settings), then one student per
recipe point is distilled from the same teachers and evaluated on the validation split. A point
with other student epochs gets a baseline trained as long. Prints, per point, mean ± std over the
seeds of the student's top-1 and ECE (x100, action), its mean action confidence (to tell over-
from under-confidence), and student minus baseline. This is how docs/distillation.md is measured.

    python benchmarks/distill_recipe.py --out runs/recipe [--seeds 0 1 2] [--points paper gt1 ...]

Finished runs are reused, so an interrupted sweep resumes.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from egodistill.demo import DemoSettings, distill_student, make_dataset, train_models

# name -> DemoSettings fields that differ from the demo's defaults for this point
POINTS: dict[str, dict] = {
    "paper": dict(alpha_gt=0.0, temperature=1.0, cache_views=8, tau=1.0, feature_teacher=""),
    "gt1": dict(alpha_gt=1.0, temperature=1.0, cache_views=8, tau=1.0, feature_teacher=""),
    "gt1_T4": dict(alpha_gt=1.0, temperature=4.0, cache_views=8, tau=1.0, feature_teacher=""),
    "gt1_tau03": dict(alpha_gt=1.0, temperature=1.0, cache_views=8, tau=0.3, feature_teacher=""),
    "gt0_tau03": dict(alpha_gt=0.0, temperature=1.0, cache_views=8, tau=0.3, feature_teacher=""),
    "gt1_tau01": dict(alpha_gt=1.0, temperature=1.0, cache_views=8, tau=0.1, feature_teacher=""),
    "gt0_tau01": dict(alpha_gt=0.0, temperature=1.0, cache_views=8, tau=0.1, feature_teacher=""),
    "gt1_K4": dict(alpha_gt=1.0, temperature=1.0, cache_views=4, tau=1.0, feature_teacher=""),
    "gt1_K16": dict(alpha_gt=1.0, temperature=1.0, cache_views=16, tau=1.0, feature_teacher=""),
    "gt1_E36": dict(alpha_gt=1.0, temperature=1.0, cache_views=8, tau=1.0, student_epochs=36, feature_teacher=""),
    "gt1_E72": dict(alpha_gt=1.0, temperature=1.0, cache_views=8, tau=1.0, student_epochs=72, feature_teacher=""),
    # the same, with the 72-epoch baseline as the ensemble's RGB teacher (flow, audio and layout
    # teachers stay at the demo's 36 epochs: their verb is near 100 % already)
    "gt1_E72_rgbT72": dict(alpha_gt=1.0, temperature=1.0, cache_views=8, tau=1.0, student_epochs=72,
                           rgb_teacher_epochs=72, feature_teacher=""),
    # an RGB teacher trained a third as long as the student (12 epochs): it has not yet learned
    # the training clips' labels, so its targets there say more than the labels do
    "gt1_rgbT12": dict(alpha_gt=1.0, temperature=1.0, cache_views=8, tau=1.0, rgb_teacher_epochs=12, feature_teacher=""),
    "gt1_T4_rgbT12": dict(alpha_gt=1.0, temperature=4.0, cache_views=8, tau=1.0, rgb_teacher_epochs=12, feature_teacher=""),
    # the ensemble temperature-scaled per head on the held-out split (distill.calibrate)
    "gt1_cal": dict(alpha_gt=1.0, temperature=1.0, cache_views=8, tau=1.0, calibrate=True, feature_teacher=""),
    "gt0_cal": dict(alpha_gt=0.0, temperature=1.0, cache_views=8, tau=1.0, calibrate=True, feature_teacher=""),
    # every teacher (RGB, flow, audio, layout) trained 12 epochs, a third of the student's budget:
    # none has yet learned the training clips' labels, so its targets there differ from them
    "gt1_allT12": dict(alpha_gt=1.0, temperature=1.0, cache_views=8, tau=1.0, all_teacher_epochs=12, feature_teacher=""),
    "gt1_T4_allT12": dict(alpha_gt=1.0, temperature=4.0, cache_views=8, tau=1.0, all_teacher_epochs=12, feature_teacher=""),
    # feature matching (distill.features, MARS): the student regresses the flow teacher's pooled
    # features on each cached view, weight 1 (the demo's recipe), 0.3 and 3
    "gt1_feat": dict(alpha_gt=1.0, temperature=1.0, cache_views=8, tau=1.0, feature_teacher="flow", feature_alpha=1.0),
    "gt1_feat03": dict(alpha_gt=1.0, temperature=1.0, cache_views=8, tau=1.0, feature_teacher="flow", feature_alpha=0.3),
    "gt1_feat3": dict(alpha_gt=1.0, temperature=1.0, cache_views=8, tau=1.0, feature_teacher="flow", feature_alpha=3.0),
}
HEADS = ("verb_top1", "noun_top1", "action_top1", "ece", "confidence")


def action_confidence(run_dir: Path) -> float:
    """Return the mean EPIC action confidence (max over actions of p(verb) p(noun)) of a run's
    validation predictions, in %."""
    logits = load_file(str(run_dir / "predictions" / "validation.safetensors"))
    verb = logits["logits.verb"].double().softmax(-1).amax(-1)
    noun = logits["logits.noun"].double().softmax(-1).amax(-1)
    return float((verb * noun).mean() * 100)


def metrics(run_dir: Path) -> dict[str, float]:
    """Evaluate `run_dir` on the validation split (reusing a finished evaluation)."""
    from egodistill.pipelines.evaluate import run_evaluate

    done = run_dir / "predictions" / "validation_metrics.json"
    m = json.loads(done.read_text()) if done.is_file() else run_evaluate(run_dir, plots=False, progress=False)
    return {"verb_top1": m["verb_top1"], "noun_top1": m["noun_top1"], "action_top1": m["action_top1"],
            "ece": m["action_ece"], "confidence": action_confidence(run_dir)}


def run_seed(out: Path, seed: int, points: list[str], synth: dict[str, float] | None = None) -> dict[str, dict[str, float]]:
    """Return {run name: metrics} of the baselines and every point's student for one seed
    (`synth`: parameters of the demo's world that differ from the demo's)."""
    s = DemoSettings(unlabelled_factor=0)  # every point distils on the labelled clips
    s.synth = {**s.synth, **(synth or {})}
    base = make_dataset(out / "synth", s, seed, quick=False, workers=2, progress=False)
    runs = out / "runs"
    teachers = train_models(base, runs, s, progress=False)
    results = {"rgb_baseline": metrics(runs / "rgb_baseline")}
    for t in teachers[1:]:
        results[t.name] = metrics(t)
    for point in points:
        settings = dict(POINTS[point])
        rgb_epochs = settings.pop("rgb_teacher_epochs", None)
        all_epochs = settings.pop("all_teacher_epochs", None)
        ps = dataclasses.replace(s, **settings)
        name = f"student_{point}"
        cache = runs / f"cache_K{ps.cache_views}_tau{ps.tau:g}{'_cal' if ps.calibrate else ''}" \
                       f"{f'_rgbT{rgb_epochs}' if rgb_epochs else ''}{f'_allT{all_epochs}' if all_epochs else ''}" \
                       f"{f'_feat{ps.feature_teacher}' if ps.feature_teacher else ''}.h5"
        if ps.student_epochs != s.student_epochs:
            results[f"rgb_baseline_E{ps.student_epochs}"] = metrics(longer_baseline(base, runs, ps, ps.student_epochs))
        point_teachers = [longer_baseline(base, runs, ps, rgb_epochs)] + teachers[1:] if rgb_epochs else teachers
        if all_epochs:  # the demo's four teachers, each trained `all_epochs` epochs, in their own folder
            short = dataclasses.replace(s, teacher_epochs=all_epochs, student_epochs=all_epochs)
            point_teachers = train_models(base, runs / f"teachers_E{all_epochs}", short, progress=False)
        if not (runs / name / "model.safetensors").is_file():
            print(f"seed {seed}: distill {name}", flush=True)
            distill_student(base, runs, name, ps.students[0], point_teachers, ps, cache_path=cache, progress=False)
        results[name] = metrics(runs / name)
    return results


def longer_baseline(base, runs: Path, s: DemoSettings, epochs: int) -> Path:
    """Return the run folder of the RGB baseline trained `epochs` epochs (trained when missing)."""
    from egodistill.demo import run_config
    from egodistill.pipelines.train import run_train

    run = runs / f"rgb_baseline_E{epochs}"
    if not (run / "model.safetensors").is_file():
        run_train(run_config(base, run, "rgb", s.students[0], epochs), progress=False)
    return run


def mean_std(values: list[float]) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.1f}" if len(v) == 1 else f"{v.mean():.1f} ± {v.std(ddof=1):.1f}"


def summarise(per_seed: list[dict[str, dict[str, float]]], points: list[str]) -> str:
    """Return the Markdown table: every run's metrics and each student's gain over its baseline."""
    lines = ["| run | verb | noun | action | ECE | confidence | action - baseline | verb - baseline |",
             "|" + "---|" * 8]
    names = [n for n in per_seed[0] if per_seed[0][n]]
    for name in names:
        cells = [mean_std([r[name][k] for r in per_seed]) for k in HEADS]
        point = name.removeprefix("student_")
        if point in POINTS:
            epochs = POINTS[point].get("student_epochs")
            base = f"rgb_baseline_E{epochs}" if epochs else "rgb_baseline"
            gains = [mean_std([r[name][k] - r[base][k] for r in per_seed]) for k in ("action_top1", "verb_top1")]
        else:
            gains = ["", ""]
        lines.append(f"| {name} | " + " | ".join(cells + gains) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/recipe"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--points", nargs="+", default=list(POINTS), choices=list(POINTS))
    p.add_argument("--synth", nargs="*", default=[], metavar="KEY=NUMBER",
                   help="a parameter of the demo's synthetic world to change, e.g. material_ring=0.3")
    args = p.parse_args(argv)
    synth = {k: float(v) for k, v in (item.split("=", 1) for item in args.synth)}
    torch.set_num_threads(max(1, torch.get_num_threads()))
    per_seed = []
    for seed in args.seeds:
        per_seed.append(run_seed(args.out / f"seed_{seed}", seed, args.points, synth))
        (args.out / f"seed_{seed}" / "results.json").write_text(json.dumps(per_seed[-1], indent=1))
    print(f"{len(args.seeds)} seeds ({', '.join(map(str, args.seeds))}); validation split; top-1 and ECE x100 "
          f"(action); confidence = mean action confidence x100\n")
    print(summarise(per_seed, args.points))


if __name__ == "__main__":
    main()
