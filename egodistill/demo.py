"""`egodistill demo`: the whole method on a laptop, through the same code that serves real data.

synth -> RGB baseline (labels only) -> flow, audio and layout teachers -> held-out dataset weights
-> distilled RGB student (teachers' frames) and a distilled student with half the frames ->
evaluation of every model and of the ensemble teacher -> one table, report.md, plots, and a
prediction on one clip exported as a video file.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from egodistill.config import Config, config_from_dict

# Each teacher is selected on the head its modality can see: flow, audio and layout show the
# motion (the verb) but hardly the object, so their action accuracy is no signal to select on.
TEACHERS = [  # (run name, modality, preset, selection metric)
    ("rgb_baseline", "rgb", "swin_nano", ""),
    ("flow_teacher", "flow", "swin_nano", "verb_top1"),
    ("audio_teacher", "audio", "swin_nano", "verb_top1"),
    ("layout_teacher", "layout", "stlt_nano", "verb_top1"),
]


@dataclasses.dataclass
class DemoSettings:
    """Sizes of one demo run; `quick` shrinks everything for a smoke test."""

    frames: int = 8
    size: int = 48
    epochs: int = 12
    student_epochs: int = 12
    batch_size: int = 16
    lr: float = 2e-3
    cache_views: int = 4
    synth_videos: int = 48
    # The demo's world is cleaner than `SynthConfig`'s defaults, because its models train for
    # about half a minute each from scratch on ~250 clips: at the defaults the audio teacher
    # never leaves the majority class (the event sound sits under the noise and the distractor
    # sounds), the RGB models cannot tell the handled object from two look-alike distractors,
    # and with 5 training kitchens they learn the kitchens, not the objects (heldout noun 52%,
    # validation 11%). The modalities keep their roles (sound and motion tell the verb,
    # appearance the noun); docs/synthetic.md, "The demo's world", gives the measurements.
    synth: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(
        audio_noise=0.02, audio_event_gain=0.5, audio_distractor_rate=0.2,
        noise_std=4.0, camera_shake=0.006, camera_drift=0.03, defocus=0.4, distractors=0, clutter=4,
        object_size=0.42, motion_amplitude=0.45, num_participants=12))

    @classmethod
    def quick(cls) -> DemoSettings:
        return cls(frames=4, size=32, epochs=2, student_epochs=2, batch_size=8, cache_views=2, synth_videos=8)


def _base_config(data_yaml: Path, s: DemoSettings, seed: int) -> Config:
    cfg = config_from_dict(yaml.safe_load(data_yaml.read_text()))
    d = cfg.data
    d.num_frames, d.stride, d.size, d.test_clips, d.test_crops = s.frames, 2, s.size, 2, 1
    d.scale_range = [1.0, 1.15]
    d.heldout_fraction = 0.15
    cfg.train = dataclasses.replace(cfg.train, epochs=s.epochs, batch_size=s.batch_size, eval_batch_size=32,
                                    workers=0, seed=seed, log_every=50)
    cfg.optim = dataclasses.replace(cfg.optim, lr=s.lr, warmup_epochs=1.0, weight_decay=0.02)
    return cfg


def _model_config(cfg: Config, run_dir: Path, modality: str, arch: str, **model: Any) -> Config:
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data), train=dataclasses.replace(cfg.train))
    cfg.model = dataclasses.replace(cfg.model, arch=arch, modality=modality, drop_path=0.1, **model)
    cfg.run_dir, cfg.name = str(run_dir), run_dir.name
    return cfg


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
    tmp = out.with_name(out.stem + ".tmp" + out.suffix)
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("mpeg4", rate=int(round(store.fps(video_id))))
        stream.width, stream.height, stream.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        for f in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[: h - h % 2, : w - w % 2]), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    tmp.replace(out)
    return out


def _row(name: str, modalities: str, frames: int, m: dict[str, float], cost: dict[str, float] | None) -> dict[str, Any]:
    return {
        "model": name, "modalities": modalities, "frames": frames,
        "verb_top1": m.get("verb_top1", float("nan")), "noun_top1": m.get("noun_top1", float("nan")),
        "action_top1": m.get("action_top1", float("nan")),
        "ece": m.get("action_ece", m.get("verb_ece", float("nan"))),
        "gflops": cost["gflops"] if cost else float("nan"), "clips_s": cost["clips_s"] if cost else float("nan"),
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    """Return the demo's rows as a Markdown table."""
    head = "| model | modalities | frames | verb top-1 | noun top-1 | action top-1 | ECE | GFLOPs/view | clips/s |"
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        fl = "-" if np.isnan(r["gflops"]) else f"{r['gflops']:.3f}"
        cs = "-" if np.isnan(r["clips_s"]) else f"{r['clips_s']:.0f}"
        lines.append(f"| {r['model']} | {r['modalities']} | {r['frames']} | {r['verb_top1']:.1f} | "
                     f"{r['noun_top1']:.1f} | {r['action_top1']:.1f} | {r['ece']:.1f} | {fl} | {cs} |")
    return "\n".join(lines)


def run_demo(out: Path, *, seed: int = 0, quick: bool = False, workers: int = 2, overwrite: bool = False,
             progress: bool = True) -> dict[str, Any]:
    """Run the whole demo into `out`; returns {"rows": [...], "evidence": {...}, "seconds": float}."""
    from egodistill.commands.distill import run_distill
    from egodistill.commands.evaluate import run_evaluate
    from egodistill.commands.train import run_train
    from egodistill.data.synth import SynthConfig, generate
    from egodistill.engine.checkpoint import load_run
    from egodistill.engine.predict import format_prediction, predict_videos

    t0 = time.time()
    s = DemoSettings.quick() if quick else DemoSettings()
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"demo folder {out} already exists; use --overwrite to start it again or --out DIR")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    def step(text: str) -> None:
        print(f"[{time.time() - t0:6.1f}s] {text}", flush=True)

    step("synth: generating the multimodal egocentric dataset")
    synth_cfg = SynthConfig.tiny(seed=seed) if quick else SynthConfig(seed=seed, num_videos=s.synth_videos, **s.synth)
    if quick:
        synth_cfg = dataclasses.replace(synth_cfg, num_videos=s.synth_videos, segments_per_video=4)
    data_root = out / "synth"
    generate(data_root, synth_cfg, workers=workers, progress=progress)
    base = _base_config(data_root / "data.yaml", s, seed)
    runs = out / "runs"

    teacher_dirs = []
    for name, modality, preset, select in TEACHERS:
        step(f"train {name} ({modality}, labels only)")
        cfg = _model_config(base, runs / name, modality, preset)
        cfg.train.select_metric = select
        run_train(cfg, progress=progress)
        teacher_dirs.append(str(runs / name))

    students = [("student", 1), ("student_half_frames", 2)]
    for name, step_k in students:
        step(f"distill the ensemble of {len(teacher_dirs)} teachers into {name} (rgb, every {step_k} frame(s))")
        cfg = _model_config(base, runs / name, "rgb", "swin_nano", frame_step=step_k)
        cfg.train.epochs = s.student_epochs
        cfg.distill = dataclasses.replace(cfg.distill, teachers=teacher_dirs, weighting="dataset",
                                          cache=dataclasses.replace(cfg.distill.cache, views=s.cache_views,
                                                                    path=str(runs / "teacher_cache.h5")))
        run_distill(cfg, progress=progress)

    step("evaluate every model and the ensemble teacher on the validation split")
    rows = []
    for name, modality, _, _ in TEACHERS:
        m = run_evaluate(runs / name, progress=progress)
        rows.append(_row(name, modality, s.frames, m, _cost(runs / name)))
    m = run_evaluate(runs / "student", teachers=True, progress=progress)
    rows.append(_row("ensemble_teacher", "+".join(t[1] for t in TEACHERS), s.frames, m, None))
    costs = [r["gflops"] for r in rows if not np.isnan(r["gflops"])]
    rows[-1]["gflops"] = float(sum(costs))
    for name, step_k in students:
        m = run_evaluate(runs / name, progress=progress)
        rows.append(_row(name, "rgb", len(range(0, s.frames, step_k)), m, _cost(runs / name)))

    by = {r["model"]: r for r in rows}
    best_teacher = max(by[n]["action_top1"] for n, *_ in TEACHERS)
    evidence = {
        "student_minus_baseline_action": by["student"]["action_top1"] - by["rgb_baseline"]["action_top1"],
        "ensemble_minus_best_teacher_action": by["ensemble_teacher"]["action_top1"] - best_teacher,
        "student_ece_minus_baseline_ece": by["student"]["ece"] - by["rgb_baseline"]["ece"],
        "half_student_minus_baseline_action": by["student_half_frames"]["action_top1"] - by["rgb_baseline"]["action_top1"],
    }

    step("predict on one validation clip exported as a video file")
    reader_cfg = base
    from egodistill.data.annotations import build_reader

    sample = build_reader(reader_cfg).samples(reader_cfg.data.eval_split)[0]
    clip = _export_clip(data_root, sample.id, sample.video_id, sample.start_frame, sample.stop_frame,
                        out / "clips" / f"{sample.id}.mp4")
    cfg, model, info = load_run(runs / "student")
    prediction = predict_videos([clip], cfg, model, info)[0]
    prediction_text = format_prediction(prediction)
    truth = {h: info.heads[h][c] for h, c in sample.labels.items()}

    table = format_table(rows)
    seconds = time.time() - t0
    result = {"rows": rows, "evidence": evidence, "seconds": seconds, "seed": seed, "quick": quick,
              "prediction": prediction, "truth": truth}
    _write_report(out, table, result, prediction_text)
    print("\n" + table + "\n")
    for k, v in evidence.items():
        print(f"{k}: {v:+.1f}")
    print(f"\npredict {clip.name} (truth: {truth}):\n{prediction_text}")
    print(f"\ndemo finished in {seconds:.0f} s; report: {out / 'report.md'}")
    return result


def _write_report(out: Path, table: str, result: dict[str, Any], prediction_text: str) -> None:
    plots = sorted(p.relative_to(out) for p in (out / "runs").glob("*/plots/*.png"))
    lines = [
        "# egodistill demo report", "",
        f"Seed {result['seed']}{' (quick)' if result['quick'] else ''}, {result['seconds']:.0f} s on this machine. "
        "Validation split of the synthetic dataset; ECE x100 (EPIC action confidence); GFLOPs and clips/s per "
        "view at inference (the ensemble's GFLOPs are the sum of its teachers').", "",
        table, "", "## Evidence", "",
        *[f"- {k}: {v:+.1f}" for k, v in result["evidence"].items()], "",
        "## Prediction on an exported clip", "", f"Truth: {result['truth']}", "", "```", prediction_text, "```", "",
        "## Plots", "", *[f"![{p}]({p})" for p in plots], "",
    ]
    tmp = out / "report.md.tmp"
    tmp.write_text("\n".join(lines))
    tmp.replace(out / "report.md")
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps({k: v for k, v in result.items()}, indent=1, default=float))
    tmp.replace(out / "results.json")
