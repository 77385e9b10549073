"""`egodistill demo`: the whole method on a laptop, through the same code that serves real data.

synth (labelled videos and unlabelled ones) -> RGB baseline (labels only; also the ensemble's RGB
teacher) -> flow, audio and layout teachers -> held-out dataset weights -> distilled RGB student
(teachers' frames) and a distilled student with half the frames, per student architecture, and a
student distilled on the unlabelled clips as well -> evaluation of every model and of the
ensemble teacher -> one table, report.md with a summary figure and plots, and the baseline's and
the students' predictions on one clip exported as a video file.

The stages (`make_dataset`, `train_models`, `distill_student`, `evaluate_models`) are also what
`benchmarks/distill_recipe.py` sweeps the distillation recipe with.
"""
from __future__ import annotations

import dataclasses
import math
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import yaml

from egodistill.atomic import atomic_path, write_json, write_text
from egodistill.config import Config, config_from_dict

if TYPE_CHECKING:
    from egodistill.synth import SynthConfig

HELDOUT_FRACTION = 0.15  # of the training videos, for model selection and the dataset weights
UNLABELLED_STUDENT = "student_unlabelled"


@dataclasses.dataclass
class DemoSettings:
    """Sizes and recipe of one demo run; `quick` shrinks everything for a smoke test.

    The RGB baseline and the students share one architecture (`students[0]`; more students add
    rows), the baseline doubles as the ensemble's RGB teacher, and every teacher trains at least
    as long as the students (docs/distillation.md measures why each choice was made).
    """

    frames: int = 8
    size: int = 48
    teacher_epochs: int = 36  # flow, audio and layout teachers: at least the students' budget
    student_epochs: int = 36  # the RGB baseline (= the RGB teacher) and the students
    batch_size: int = 16
    lr: float = 2e-3
    # 72 videos, half of the seen participants' for validation: ~330 training clips and ~390
    # validation clips, so that one clip is 0.26 points of top-1 (150 clips: 0.67 points, and a
    # seed-to-seed spread as large as the effect measured).
    synth_videos: int = 72
    students: tuple[str, ...] = ("cnn3d_nano",)
    # Teachers use what learns their modality best at this budget; flow and audio are images of
    # motion and sound over time, which the small 3D CNN reads better than swin_nano does.
    teachers: dict[str, str] = dataclasses.field(default_factory=lambda: {
        "flow": "cnn3d_nano", "audio": "cnn3d_nano", "layout": "layout_tcn_nano"})
    # The distillation recipe, from the sweep in docs/distillation.md.
    alpha_gt: float = 1.0
    temperature: float = 1.0
    tau: float = 1.0
    cache_views: int = 8
    calibrate: bool = False  # temperature-scale the ensemble on the held-out split (distill.calibrate)
    # Feature matching (distill.features, MARS; not in the paper): a student regresses this
    # teacher's pooled features when the two share an architecture; "" = off. Over three seeds
    # it made every student's verb better and left the action where it was (docs/distillation.md,
    # "An RGB student that imitates the flow teacher").
    feature_teacher: str = "flow"
    feature_alpha: float = 1.0
    # Unlabelled clips per labelled training clip for the `student_unlabelled` row (the demo's
    # student distilled on labelled + unlabelled clips, KD term alone on the unlabelled ones;
    # `benchmarks/unlabelled.py` measures it); 0 leaves the row out.
    unlabelled_factor: float = 2.0
    # Every run keeps its last epoch: on a 50-clip held-out split the best of 36 noisy evaluations
    # is often a lucky early epoch (docs/distillation.md, "Which weights to keep").
    keep_weights: Literal["best", "last"] = "last"
    # The demo's world is cleaner than `SynthConfig`'s defaults, because its models train for
    # about a minute each from scratch on ~250 clips: at the defaults the audio teacher
    # never leaves the majority class (the event sound sits under the noise and the distractor
    # sounds), the RGB models cannot tell the handled object from two look-alike distractors,
    # and with 5 training kitchens they learn the kitchens, not the objects (heldout noun 52%,
    # validation 11%). The modalities keep their roles (sound and motion tell the verb,
    # appearance the noun); docs/synthetic.md, "The demo's world", gives the measurements.
    synth: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(
        audio_noise=0.02, audio_event_gain=0.5, audio_distractor_rate=0.2,
        noise_std=4.0, camera_shake=0.006, camera_drift=0.03, defocus=0.4, distractors=0, clutter=4,
        object_size=0.42, motion_amplitude=0.45, num_participants=12, val_fraction=0.5))

    @classmethod
    def quick(cls) -> DemoSettings:
        return cls(frames=4, size=32, teacher_epochs=2, student_epochs=2, batch_size=8, cache_views=2, synth_videos=8)


def base_config(data_yaml: Path, s: DemoSettings, seed: int) -> Config:
    """Return the demo's shared config (data, optimiser, trainer) for the dataset at `data_yaml`."""
    cfg = config_from_dict(yaml.safe_load(data_yaml.read_text()))
    d = cfg.data
    d.num_frames, d.stride, d.size, d.test_clips, d.test_crops = s.frames, 2, s.size, 2, 1
    d.scale_range = [1.0, 1.15]
    d.heldout_fraction = HELDOUT_FRACTION
    cfg.train = dataclasses.replace(cfg.train, epochs=s.teacher_epochs, batch_size=s.batch_size, eval_batch_size=32,
                                    workers=0, seed=seed, log_every=50, keep_weights=s.keep_weights)
    cfg.optim = dataclasses.replace(cfg.optim, lr=s.lr, warmup_epochs=1.0, weight_decay=0.02)
    return cfg


def run_config(cfg: Config, run_dir: Path, modality: str, arch: str, epochs: int, **model: Any) -> Config:
    """Return a copy of `cfg` for one run: its folder, model and epochs."""
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data), train=dataclasses.replace(cfg.train, epochs=epochs),
                              distill=dataclasses.replace(cfg.distill))
    cfg.model = dataclasses.replace(cfg.model, arch=arch, modality=modality, drop_path=0.1, **model)
    cfg.run_dir, cfg.name = str(run_dir), run_dir.name
    return cfg


def make_dataset(root: Path, s: DemoSettings, seed: int, *, quick: bool, workers: int, progress: bool) -> Config:
    """Generate the synthetic dataset into `root` (kept when it is already there); return `base_config`."""
    from egodistill.synth import generate

    if not (root / "data.yaml").is_file():
        generate(root, synth_config(s, seed, quick), workers=workers, progress=progress)
    return base_config(root / "data.yaml", s, seed)


def synth_config(s: DemoSettings, seed: int, quick: bool) -> SynthConfig:
    """Return the demo's `SynthConfig` for `seed`: its world, plus `s.unlabelled_factor` x as many
    unlabelled videos as the students have labelled training videos (the training videos less the
    held-out share; same participants and world)."""
    from egodistill.synth import SynthConfig, plan_dataset

    if quick:
        cfg = dataclasses.replace(SynthConfig.tiny(seed=seed), num_videos=s.synth_videos, segments_per_video=4)
    else:
        cfg = SynthConfig(seed=seed, num_videos=s.synth_videos, **s.synth)
    if s.unlabelled_factor <= 0:
        return cfg
    train = sum(v.split == "train" for v in plan_dataset(cfg))
    return dataclasses.replace(cfg, num_unlabelled=max(1, math.ceil(s.unlabelled_factor * train * (1 - HELDOUT_FRACTION))))


def baseline_name(arch: str, s: DemoSettings) -> str:
    """Run name of the RGB baseline of student architecture `arch` (the first one's is `rgb_baseline`)."""
    return "rgb_baseline" if arch == s.students[0] else f"rgb_baseline_{arch}"


def student_names(arch: str, s: DemoSettings) -> list[tuple[str, int]]:
    """Return (run name, frame step) of the students of architecture `arch`: all frames and half."""
    suffix = "" if arch == s.students[0] else f"_{arch}"
    return [(f"student{suffix}", 1), (f"student_half_frames{suffix}", 2)]


def train_models(base: Config, runs: Path, s: DemoSettings, *, progress: bool, log=print) -> list[Path]:
    """Train the RGB baseline of every student architecture and the flow, audio and layout
    teachers on the labels; return the ensemble's teachers (the first baseline, then the others)."""
    from egodistill.pipelines.train import run_train

    for arch in s.students:
        name = baseline_name(arch, s)
        if not (runs / name / "model.safetensors").is_file():
            log(f"train {name} ({arch}, rgb, labels only, {s.student_epochs} epochs)")
            run_train(run_config(base, runs / name, "rgb", arch, s.student_epochs), progress=progress)
    teachers = [runs / baseline_name(s.students[0], s)]  # the RGB teacher: as long-trained as the students
    for modality, arch in s.teachers.items():
        name = f"{modality}_teacher"
        if not (runs / name / "model.safetensors").is_file():
            log(f"train {name} ({arch}, {modality}, labels only, {s.teacher_epochs} epochs)")
            cfg = run_config(base, runs / name, modality, arch, s.teacher_epochs)
            # Flow, audio and layout show the motion (the verb) but hardly the object, so their
            # action accuracy is no signal to select on (or, with keep_weights=last, to log).
            cfg.train.select_metric = "verb_top1"
            run_train(cfg, progress=progress)
        teachers.append(runs / name)
    return teachers


def student_config(base: Config, runs: Path, name: str, arch: str, teachers: list[Path], s: DemoSettings, *,
                   frame_step: int = 1, cache_path: Path | None = None) -> Config:
    """Return the config that distils the ensemble of `teachers` into student `name` (RGB, `arch`)
    through the teacher cache at `cache_path` (default `runs/teacher_cache.h5`), matching the
    features of `s.feature_teacher` when that teacher has the student's architecture."""
    cfg = run_config(base, runs / name, "rgb", arch, s.student_epochs, frame_step=frame_step)
    matched = s.feature_teacher if s.teachers.get(s.feature_teacher) == arch else ""
    cfg.distill = dataclasses.replace(
        cfg.distill, teachers=[str(t) for t in teachers], weighting="dataset", tau=s.tau,
        temperature=s.temperature, alpha_gt=s.alpha_gt, calibrate=s.calibrate,
        cache=dataclasses.replace(cfg.distill.cache, views=s.cache_views, path=str(cache_path or runs / "teacher_cache.h5")),
        features=dataclasses.replace(cfg.distill.features, teacher=matched, alpha=s.feature_alpha))
    return cfg


def distill_student(base: Config, runs: Path, name: str, arch: str, teachers: list[Path], s: DemoSettings, *,
                    frame_step: int = 1, cache_path: Path | None = None, progress: bool) -> Path:
    """Distil student `name` (`student_config`; the cache is built by the first student and reused
    by the others); return its run folder."""
    from egodistill.pipelines.distill import run_distill

    run_distill(student_config(base, runs, name, arch, teachers, s, frame_step=frame_step, cache_path=cache_path),
                progress=progress)
    return runs / name


def with_unlabelled(cfg: Config) -> Config:
    """Return `cfg` distilling on the dataset's unlabelled split as well (`distill.unlabelled.split`)."""
    unlabelled = dataclasses.replace(cfg.distill.unlabelled, split="unlabelled")
    return dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, unlabelled=unlabelled))


def evaluate_models(runs: Path, s: DemoSettings, teachers: list[Path], *, progress: bool) -> list[dict[str, Any]]:
    """Temperature-scale every run on its held-out clips (`egodistill calibrate`), then evaluate
    every run and the ensemble teacher on the validation split; return the table's rows."""
    from egodistill.pipelines.calibrate import run_calibrate
    from egodistill.pipelines.evaluate import run_evaluate

    def row(name: str, modality: str, arch: str, frames: int, ensemble: bool = False) -> dict[str, Any]:
        if not ensemble:
            run_calibrate(runs / name, progress=progress)
        m = run_evaluate(runs / name, teachers=ensemble, progress=progress)
        return _row(name, arch, modality, frames, m, None if ensemble else _cost(runs / name))

    rows = [row(t.name, *_run_model(t), s.frames) for t in teachers]
    first_student = student_names(s.students[0], s)[0][0]
    ensemble = row(first_student, "+".join(r["modalities"] for r in rows), "ensemble", s.frames, ensemble=True)
    ensemble["model"], ensemble["gflops"] = "ensemble_teacher", float(sum(r["gflops"] for r in rows))
    rows.append(ensemble)
    for arch in s.students:
        if arch != s.students[0]:
            rows.append(row(baseline_name(arch, s), "rgb", arch, s.frames))
        for name, step_k in student_names(arch, s):
            rows.append(row(name, "rgb", arch, len(range(0, s.frames, step_k))))
        if arch == s.students[0] and s.unlabelled_factor > 0:
            rows.append(row(UNLABELLED_STUDENT, "rgb", arch, s.frames))
    return rows


def _run_model(run_dir: Path) -> tuple[str, str]:
    """Return (modality, arch) of a run folder."""
    from egodistill.config import load_config

    cfg = load_config(run_dir / "config.yaml")
    return cfg.model.modality, cfg.model.arch


def demo_evidence(rows: list[dict[str, Any]], s: DemoSettings) -> dict[str, float]:
    """Return the demo's claims as differences (points): per student architecture, student minus
    baseline (action and verb top-1, ECE) and half-frame student minus baseline; ensemble minus
    its best teacher; with the unlabelled row, that student minus the student (action) and minus
    the baseline (action, ECE). ECE is of the temperature-scaled models; keys ending in
    `_uncalibrated` compare the ECE before scaling. Keys of extra student architectures end in
    `_<arch>`."""
    by = {r["model"]: r for r in rows}
    teachers = rows[: rows.index(by["ensemble_teacher"])]
    out = {"ensemble_minus_best_teacher_action":
           by["ensemble_teacher"]["action_top1"] - max(r["action_top1"] for r in teachers)}
    for arch in s.students:
        suffix = "" if arch == s.students[0] else f"_{arch}"
        base = by[baseline_name(arch, s)]
        (full, _), (half, _) = student_names(arch, s)
        out[f"student_minus_baseline_action{suffix}"] = by[full]["action_top1"] - base["action_top1"]
        out[f"student_minus_baseline_verb{suffix}"] = by[full]["verb_top1"] - base["verb_top1"]
        out[f"student_ece_minus_baseline_ece{suffix}"] = by[full]["ece"] - base["ece"]
        out[f"student_ece_minus_baseline_ece_uncalibrated{suffix}"] = \
            by[full]["ece_uncalibrated"] - base["ece_uncalibrated"]
        out[f"half_student_minus_baseline_action{suffix}"] = by[half]["action_top1"] - base["action_top1"]
    if UNLABELLED_STUDENT in by:
        unlabelled, base = by[UNLABELLED_STUDENT], by[baseline_name(s.students[0], s)]
        first = by[student_names(s.students[0], s)[0][0]]
        out["unlabelled_student_minus_student_action"] = unlabelled["action_top1"] - first["action_top1"]
        out["unlabelled_student_minus_baseline_action"] = unlabelled["action_top1"] - base["action_top1"]
        out["unlabelled_student_ece_minus_baseline_ece"] = unlabelled["ece"] - base["ece"]
        out["unlabelled_student_ece_minus_baseline_ece_uncalibrated"] = \
            unlabelled["ece_uncalibrated"] - base["ece_uncalibrated"]
    return out


def _cost(run_dir: Path) -> dict[str, float]:
    """GFLOPs per view and inference clips/s of a run's model on one test view."""
    from egodistill.engine.checkpoint import load_run
    from egodistill.engine.inputs import example_input
    from egodistill.models import model_cost

    cfg, model, _ = load_run(run_dir)
    frames = len(range(0, cfg.data.num_frames, cfg.model.frame_step))
    x = example_input(cfg, frames, cfg.data.size, 8)
    cost = model_cost(model.eval(), x, min_seconds=0.3, min_iters=2)
    return {"gflops": cost["gflops"], "clips_s": cost["fwd_clips_s"]}


def _export_clip(data_root: Path, sample_id: str, video_id: str, start: int, stop: int, out: Path) -> Path:
    """Write frames start..stop of `video_id` from rgb.h5 as an mp4 (PyAV), for `predict`."""
    import av
    import cv2

    from egodistill.data.stores import RGBStore

    store = RGBStore(data_root / "rgb.h5")
    jpegs = store.read_frames(video_id, list(range(start, stop + 1)))
    frames = [cv2.cvtColor(cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for j in jpegs]
    h, w = frames[0].shape[:2]
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, keep_suffix=True) as tmp, av.open(str(tmp), "w") as container:
        stream = container.add_stream("mpeg4", rate=int(round(store.fps(video_id))))
        stream.width, stream.height, stream.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        for f in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[: h - h % 2, : w - w % 2]), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return out


def _row(name: str, arch: str, modalities: str, frames: int, m: dict[str, float],
         cost: dict[str, float] | None) -> dict[str, Any]:
    ece_key = "action_ece" if "action_ece" in m else "verb_ece"
    return {
        "model": name, "arch": arch, "modalities": modalities, "frames": frames,
        "verb_top1": m.get("verb_top1", float("nan")), "noun_top1": m.get("noun_top1", float("nan")),
        "action_top1": m.get("action_top1", float("nan")),
        "ece": m.get(ece_key, float("nan")),
        # before the run's temperature scaling (the same where there is none: the ensemble)
        "ece_uncalibrated": m.get(f"{ece_key}_uncalibrated", m.get(ece_key, float("nan"))),
        "gflops": cost["gflops"] if cost else float("nan"), "clips_s": cost["clips_s"] if cost else float("nan"),
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    """Return the demo's rows as a Markdown table."""
    head = ("| model | arch | modalities | frames | verb top-1 | noun top-1 | action top-1 | ECE | ECE raw "
            "| GFLOPs/view | clips/s |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        fl = "-" if np.isnan(r["gflops"]) else f"{r['gflops']:.3f}"
        cs = "-" if np.isnan(r["clips_s"]) else f"{r['clips_s']:.0f}"
        lines.append(f"| {r['model']} | {r['arch']} | {r['modalities']} | {r['frames']} | {r['verb_top1']:.1f} | "
                     f"{r['noun_top1']:.1f} | {r['action_top1']:.1f} | {r['ece']:.1f} | {r['ece_uncalibrated']:.1f} | "
                     f"{fl} | {cs} |")
    return "\n".join(lines)


# What a demo writes into its folder; --overwrite deletes only a folder holding nothing else.
DEMO_OUTPUTS = {"synth", "synth.tmp", "runs", "clips", "report.md", "report.md.tmp", "results.json",
                "results.json.tmp", "summary.png", "summary.png.tmp"}
# What only a demo writes: a folder without one of these is not a demo's, whatever else it holds.
DEMO_MARKERS = ("synth/synth.json", "synth.tmp", "results.json")


def demo_folder_problem(out: Path) -> str:
    """Return why `--overwrite` must not delete `out` ("" when it holds a demo's outputs and nothing else)."""
    names = sorted(p.name for p in out.iterdir())
    foreign = [n for n in names if n not in DEMO_OUTPUTS and not n.startswith(".synth.replaced-")]
    if foreign:
        return f"it holds files a demo does not write ({', '.join(foreign[:5])})"
    if not any((out / m).exists() for m in DEMO_MARKERS):
        return f"it holds no demo dataset or results ({', '.join(names[:5])})"
    return ""


def run_demo(out: Path, *, seed: int = 0, quick: bool = False, settings: DemoSettings | None = None,
             students: list[str] | None = None, workers: int = 2, overwrite: bool = False,
             progress: bool = True, unlabelled_factor: float | None = None) -> dict[str, Any]:
    """Run the whole demo into `out`; returns {"rows": [...], "evidence": {...}, "seconds": float, ...}.

    `students`: the student architectures (the first is also the RGB baseline's and the RGB
    teacher's); default `settings.students`. `unlabelled_factor`: default `settings.unlabelled_factor`.
    """
    t0 = time.time()
    s = settings or (DemoSettings.quick() if quick else DemoSettings())
    if students:
        s = dataclasses.replace(s, students=tuple(dict.fromkeys(students)))
    if unlabelled_factor is not None:
        s = dataclasses.replace(s, unlabelled_factor=float(unlabelled_factor))
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"demo folder {out} already exists; use --overwrite to start it again or --out DIR")
        problem = demo_folder_problem(out)
        if problem:
            raise ValueError(f"--overwrite: {out} is not deleted: {problem}. Choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)

    def step(text: str) -> None:
        print(f"[{time.time() - t0:6.1f}s] {text}", flush=True)

    step("synth: generating the multimodal egocentric dataset")
    base = make_dataset(out / "synth", s, seed, quick=quick, workers=workers, progress=progress)
    runs = out / "runs"
    teachers = train_models(base, runs, s, progress=progress, log=step)
    for arch in s.students:
        for name, step_k in student_names(arch, s):
            step(f"distill the ensemble of {len(teachers)} teachers into {name} ({arch}, rgb, every {step_k} frame(s))")
            distill_student(base, runs, name, arch, teachers, s, frame_step=step_k, progress=progress)
    if s.unlabelled_factor > 0:
        step(f"distill the ensemble into {UNLABELLED_STUDENT} ({s.students[0]}, rgb) on the labelled clips and "
             f"{s.unlabelled_factor:g}x as many unlabelled ones")
        distill_student(with_unlabelled(base), runs, UNLABELLED_STUDENT, s.students[0], teachers, s,
                        cache_path=runs / "teacher_cache_unlabelled.h5", progress=progress)

    step("calibrate every model on its held-out clips; evaluate them and the ensemble teacher on the validation split")
    rows = evaluate_models(runs, s, teachers, progress=progress)
    evidence = demo_evidence(rows, s)

    step("predict on one validation clip exported as a video file")
    prediction = _predict_exported_clip(out, base, runs, s)
    table = format_table(rows)
    result = {"rows": rows, "evidence": evidence, "seconds": time.time() - t0, "seed": seed, "quick": quick,
              "settings": dataclasses.asdict(s), **prediction}
    _write_report(out, table, result)
    print("\n" + table + "\n")
    for k, v in evidence.items():
        print(f"{k}: {v:+.1f}")
    print(f"\npredict {prediction['clip']} (truth: {prediction['truth']}):\n{prediction['prediction_text']}")
    print(f"\ndemo finished in {result['seconds']:.0f} s; report: {out / 'report.md'}")
    return result


def _predict_exported_clip(out: Path, base: Config, runs: Path, s: DemoSettings) -> dict[str, Any]:
    """Export the first validation clip as an mp4 and predict it with the RGB baseline and the
    students side by side; return {"clip", "truth", "prediction" (the student's), "prediction_text"}."""
    from egodistill.data.annotations import build_reader
    from egodistill.engine.calibration import apply_run_calibration
    from egodistill.engine.checkpoint import load_run
    from egodistill.engine.predict import format_predictions_side_by_side, predict_videos

    sample = build_reader(base).samples(base.data.eval_split)[0]
    clip = _export_clip(out / "synth", sample.id, sample.video_id, sample.start_frame, sample.stop_frame,
                        out / "clips" / f"{sample.id}.mp4")
    records = {}
    names = [baseline_name(s.students[0], s), student_names(s.students[0], s)[0][0]]
    if s.unlabelled_factor > 0:
        names.append(UNLABELLED_STUDENT)
    for name in names:
        cfg, model, info = load_run(runs / name)
        apply_run_calibration(model, runs / name)
        records[name] = predict_videos([clip], cfg, model, info)[0]
    truth = {h: info.heads[h][c] for h, c in sample.labels.items()}
    student = records[student_names(s.students[0], s)[0][0]]
    return {"clip": clip.name, "truth": truth, "prediction": student, "predictions": records,
            "prediction_text": format_predictions_side_by_side(records)}


def _write_report(out: Path, table: str, result: dict[str, Any]) -> None:
    """Write report.md (summary figure, table, evidence, prediction, per-run plots) and results.json."""
    from egodistill.engine.plots import plot_model_summary

    plot_model_summary(result["rows"], out / "summary.png")
    plots = sorted(p.relative_to(out) for p in (out / "runs").glob("*/plots/*.png"))
    lines = [
        "# egodistill demo report", "", "![summary](summary.png)", "",
        f"Seed {result['seed']}{' (quick)' if result['quick'] else ''}, {result['seconds']:.0f} s on this machine. "
        "Validation split of the synthetic dataset; ECE x100 (EPIC action confidence) of each model "
        "temperature-scaled on its held-out clips (`egodistill calibrate`), ECE raw before; GFLOPs and clips/s "
        "per view at inference (the ensemble's GFLOPs are the sum of its teachers').", "",
        table, "", "## Evidence", "",
        *[f"- {k}: {v:+.1f}" for k, v in result["evidence"].items()], "",
        "## Prediction on an exported clip: RGB baseline and student", "", f"Truth: {result['truth']}", "",
        "```", result["prediction_text"], "```", "",
        "## Plots", "", *[f"![{p}]({p})" for p in plots], "",
    ]
    write_text(out / "report.md", "\n".join(lines))
    write_json(out / "results.json", result)
