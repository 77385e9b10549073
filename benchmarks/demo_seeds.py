"""Run `egodistill demo` for several seeds and print each model's metrics and the evidence as mean ± std.

This is how README.md's demo table is measured (three seeds, mean ± std). Seeds run one after
another: on a 2-core machine parallel demos only slow each other down.

    python benchmarks/demo_seeds.py --out runs/demo_seeds [--seeds 0 1 2] [--quick] [--student ARCH ...]

Each seed's full demo lands in OUT/seed_N (report.md, results.json, runs); a seed whose
results.json exists is not run again, so an interrupted measurement resumes.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from egodistill.demo import run_demo

COLUMNS = ["verb_top1", "noun_top1", "action_top1", "ece", "ece_uncalibrated"]
TARGETS = {  # evidence key -> (what it compares, the target, printed beside the measurement)
    "student_minus_baseline_action": ("student vs baseline, action top-1", ">= +5"),
    "student_minus_baseline_verb": ("student vs baseline, verb top-1", ">= +5"),
    "ensemble_minus_best_teacher_action": ("ensemble vs best teacher, action top-1", ">= 0"),
    "student_ece_minus_baseline_ece": ("student ECE vs baseline ECE (both temperature-scaled)", "<= 0"),
    "student_ece_minus_baseline_ece_uncalibrated": ("student ECE vs baseline ECE, before temperature scaling", "-"),
    "half_student_minus_baseline_action": ("half-frame student vs baseline, action top-1", ">= 0"),
    "unlabelled_student_minus_student_action": ("student with unlabelled clips vs student, action top-1", "> 0"),
    "unlabelled_student_minus_baseline_action": ("student with unlabelled clips vs baseline, action top-1", "-"),
    "unlabelled_student_ece_minus_baseline_ece": ("student with unlabelled clips: ECE vs baseline ECE", "-"),
    "unlabelled_student_ece_minus_baseline_ece_uncalibrated": (
        "student with unlabelled clips: ECE vs baseline ECE, before temperature scaling", "-"),
}


def mean_std(values: list[float], signed: bool = False) -> str:
    """Return 'mean ± std' (sample std, ddof=1; a single value has no ± part); `signed`: the
    mean with its sign, as differences are written."""
    v = np.asarray(values, dtype=float)
    mean = f"{v.mean():+.1f}" if signed else f"{v.mean():.1f}"
    return mean if len(v) == 1 else f"{mean} ± {v.std(ddof=1):.1f}"


def summarise(results: list[dict]) -> str:
    """Return the Markdown tables (models, then evidence) of several demo results.json dicts."""
    names = [r["model"] for r in results[0]["rows"]]
    lines = ["| model | arch | modalities | frames | verb top-1 | noun top-1 | action top-1 | ECE | ECE raw |",
             "|" + "---|" * 9]
    for i, name in enumerate(names):
        rows = [res["rows"][i] for res in results]
        cells = [mean_std([r[c] for r in rows]) for c in COLUMNS]
        lines.append(f"| {name} | {rows[0]['arch']} | {rows[0]['modalities']} | {rows[0]['frames']} | "
                     + " | ".join(cells) + " |")
    lines += ["", "| evidence | measured | target | per seed |", "|---|---|---|---|"]
    for key in results[0]["evidence"]:
        base_key = max((k for k in TARGETS if key.startswith(k)), key=len)  # the longest: `_uncalibrated` ones
        text, target = TARGETS[base_key]
        arch = key[len(base_key):].lstrip("_")
        vals = [res["evidence"][key] for res in results]
        lines.append(f"| {text}{f' ({arch})' if arch else ''} | {mean_std(vals, signed=True)} | {target} | "
                     f"{', '.join(f'{v:+.1f}' for v in vals)} |")
    secs = [res["seconds"] for res in results]
    lines += ["", f"{len(results)} seeds; wall clock per demo {min(secs):.0f} - {max(secs):.0f} s."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/demo_seeds"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--student", action="append", metavar="ARCH", help="student architecture(s), as `demo --student`")
    args = p.parse_args(argv)
    results = []
    for seed in args.seeds:
        done = args.out / f"seed_{seed}" / "results.json"
        if not done.is_file():
            run_demo(args.out / f"seed_{seed}", seed=seed, quick=args.quick, students=args.student, overwrite=True,
                     progress=False)
        result = json.loads(done.read_text())
        if any(c not in row for row in result["rows"] for c in COLUMNS):
            raise SystemExit(f"{done} was written by an older demo (its rows lack one of {', '.join(COLUMNS)}); "
                             f"delete {done.parent} to run that seed again, or use another --out")
        results.append(result)
    print(summarise(results))


if __name__ == "__main__":
    main()
