"""Does distilling on unlabelled clips help? (issue 17, point 3)

    python benchmarks/unlabelled.py [--seeds 0 1 2] [--factor 2] [--out DIR] [--quick] [--workers 2]

For each seed: the demo's synthetic dataset (`egodistill.demo.make_dataset`, the demo's world)
with `factor` x as many unlabelled videos as the student has labelled training videos
(`DemoSettings.unlabelled_factor`: the same labelled videos, participants and world), the demo's
teachers (`train_models`), then two students distilled with the demo's recipe
(`distill_student`): on the labelled set alone, and on the labelled set plus the unlabelled
clips (`distill.unlabelled.split=unlabelled`, every unlabelled clip in every epoch; KD term alone
on them). Both are evaluated on the validation split; prints one row per seed and the mean ± std
(sample std) over seeds of verb / noun / action top-1 and of the difference (with minus without).

Every stage is kept on disk (`--out`, default runs/bench_unlabelled): a rerun continues where it
stopped. `--quick` is a smoke test (DemoSettings.quick(), the tiny world), not evidence.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

from egodistill.demo import DemoSettings, distill_student, make_dataset, synth_config, train_models, with_unlabelled

HEADS = ("verb_top1", "noun_top1", "action_top1")


def run_seed(out: Path, s: DemoSettings, seed: int, *, quick: bool, factor: float, workers: int,
             progress: bool) -> dict[str, dict[str, float]]:
    from egodistill.pipelines.evaluate import run_evaluate

    s = dataclasses.replace(s, unlabelled_factor=factor)
    print(f"seed {seed}: the demo's dataset with {synth_config(s, seed, quick).num_unlabelled} unlabelled videos",
          flush=True)
    base = make_dataset(out / f"seed{seed}" / "synth", s, seed, quick=quick, workers=workers, progress=progress)
    runs = out / f"seed{seed}" / "runs"
    teachers = train_models(base, runs, s, progress=progress)
    arch = s.students[0]
    with_unl = with_unlabelled(base)
    results = {}
    for name, cfg in (("student_labelled", base), ("student_unlabelled", with_unl)):
        if not (runs / name / "model.safetensors").is_file():
            print(f"seed {seed}: distill {name}", flush=True)
            distill_student(cfg, runs, name, arch, teachers, s, cache_path=runs / f"cache_{name}.h5", progress=progress)
        metrics = run_evaluate(runs / name, progress=progress, plots=False)
        results[name] = {k: float(metrics[k]) for k in HEADS}
    return results


def mean_std(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {sd:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--factor", type=float, default=2.0, help="unlabelled clips per labelled training clip (default 2)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_unlabelled"))
    ap.add_argument("--quick", action="store_true", help="smoke test: DemoSettings.quick() and the tiny world")
    ap.add_argument("--workers", type=int, default=2, help="processes for the synthetic data")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()
    s = DemoSettings.quick() if args.quick else DemoSettings()
    t0 = time.time()
    per_seed = {}
    for seed in args.seeds:
        per_seed[seed] = run_seed(args.out, s, seed, quick=args.quick, factor=args.factor, workers=args.workers,
                                  progress=args.progress)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"settings": dataclasses.asdict(s), "factor": args.factor,
                                                       "per_seed": per_seed}, indent=1))
    print(f"\nstudent distilled on the labelled set alone vs labelled + {args.factor:g}x unlabelled clips; validation "
          f"split; top-1 in %; seeds {', '.join(map(str, args.seeds))}{' (quick: a smoke test)' if args.quick else ''}\n")
    print("| student | verb top-1 | noun top-1 | action top-1 |")
    print("|---|---|---|---|")
    for name in ("student_labelled", "student_unlabelled"):
        print(f"| {name} | " + " | ".join(mean_std([per_seed[k][name][h] for k in args.seeds]) for h in HEADS) + " |")
    diffs = {h: [per_seed[k]["student_unlabelled"][h] - per_seed[k]["student_labelled"][h] for k in args.seeds]
             for h in HEADS}
    print("| with minus without | " + " | ".join(mean_std(diffs[h]) for h in HEADS) + " |")
    print(f"\naction top-1 per seed (with minus without): {', '.join(f'{d:+.1f}' for d in diffs['action_top1'])}")
    print(f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
