"""Orchestration: plan, render every video to JPEG frames and a WAV (in parallel), then write the
stores through the `prepare` code, the CSVs, data.yaml and synth.json."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from egodistill.atomic import write_text
from egodistill.synth.annotations import ANNOTATION_FILES, UNLABELLED_FILE, write_annotations
from egodistill.synth.audio import verb_frequencies, write_wav
from egodistill.synth.config import SynthConfig
from egodistill.synth.plan import VideoPlan, plan_dataset
from egodistill.synth.render import render_video
from egodistill.synth.vocab import VERB_POOL, noun_key

STORE_FILES = {"rgb": "rgb.h5", "flow": "flow.h5", "audio": "audio.h5", "layout": "layout.h5"}


def _render_to_disk(job: tuple[SynthConfig, VideoPlan, Path, Path]) -> tuple[str, dict[str, Any]]:
    """Render one video into an EPIC frame folder and a WAV; return (video id, its detections)."""
    cfg, plan, frames_dir, wav_dir = job
    frames, dets, audio = render_video(cfg, plan)
    vdir = frames_dir / plan.video_id
    vdir.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality]
    for i, frame in enumerate(frames):
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]), params)  # OpenCV wants BGR
        if not ok:
            raise RuntimeError(f"synth: JPEG encoding failed for video {plan.video_id}, frame {i + 1}")
        (vdir / f"frame_{i + 1:010d}.jpg").write_bytes(buf.tobytes())
    write_wav(wav_dir / f"{plan.video_id}.wav", audio, cfg.sample_rate)
    dets.pop("_truth")
    return plan.video_id, dets


def data_config(root: Path, *, unlabelled: bool = False) -> dict[str, Any]:
    """Return the config fragment that points a run at a synthetic dataset in `root` (with the
    `unlabelled` split's file when the dataset has unlabelled videos)."""
    files = dict(ANNOTATION_FILES, **({"unlabelled": UNLABELLED_FILE} if unlabelled else {}))
    return {"data": {"reader": "epic100", "root": str(Path(root).resolve()), "files": files,
                     "stores": dict(STORE_FILES)}}


# What a finished dataset holds: `--force` replaces only a folder holding these and nothing else
# (data.yaml and synth.json among them); anything more is the user's, and the folder is kept.
SYNTH_OUTPUTS = {"annotations", "data.yaml", "synth.json", *STORE_FILES.values()}
SYNTH_ANNOTATIONS = {Path(f).name for f in [*ANNOTATION_FILES.values(), UNLABELLED_FILE]}


def foreign_entries(folder: Path, *, partial: bool = False) -> list[str]:
    """Return what in `folder` a synth dataset does not hold (relative paths; empty: the folder is
    one, or is empty). `partial`: an interrupted build in `<out>.tmp`, which may also hold the
    build's `_work*` folder and `<name>.tmp` files. A folder without data.yaml and synth.json is
    not a finished dataset: those two are then named as missing."""
    def known(entry: Path, names: set[str], folder_name: str | None = None) -> bool:
        name = entry.name[:-4] if partial and entry.name.endswith(".tmp") else entry.name
        return name in names and not entry.is_symlink() and entry.is_dir() == (name == folder_name)

    entries = sorted(folder.iterdir())
    foreign = [p.name for p in entries
               if not known(p, SYNTH_OUTPUTS, "annotations") and not (partial and p.name.startswith("_work"))]
    ann = folder / "annotations"
    if "annotations" not in foreign and ann.is_dir():
        foreign += [f"annotations/{p.name}" for p in sorted(ann.iterdir()) if not known(p, SYNTH_ANNOTATIONS)]
    if entries and not partial and not foreign:
        foreign = [f"no {name}" for name in ("data.yaml", "synth.json") if not (folder / name).is_file()]
    return foreign


def generate(out: Path, cfg: SynthConfig, *, workers: int = 1, progress: bool = True, overwrite: bool = False) -> dict:
    """Build the synthetic dataset in folder `out`; return the summary also saved in synth.json.

    The dataset is built in `<out>.tmp` and renamed to `out` at the end, so `out` is either
    complete or absent; on any failure `<out>.tmp` is removed and an existing `out` is left as
    it was. Raises FileExistsError if `out` exists, unless `overwrite` and `out` is a folder
    holding a synth dataset and nothing else (`foreign_entries`), which is replaced only once
    the new one is complete; also if `out` is not a folder, or `<out>.tmp` is something other
    than an interrupted build. Writes: annotations/*.csv (EPIC-100), rgb.h5, flow.h5, audio.h5,
    layout.h5, data.yaml (config fragment) and synth.json (parameters, seed, counts, timings).
    """
    cfg.validate()
    out = Path(out).expanduser().resolve()
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"synth: {out} exists and is not a folder; it is left as it is. Choose another OUT")
        if not overwrite:
            raise FileExistsError(f"synth: output folder {out} already exists (use --force to replace it)")
        foreign = foreign_entries(out)
        if foreign:
            raise FileExistsError(f"synth: --force: {out} is not a synth dataset ({', '.join(foreign[:5])}); "
                                  "it is not deleted. Choose another OUT")
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists() or tmp.is_symlink():  # left over from an interrupted build, or someone's file
        if tmp.is_symlink() or not tmp.is_dir() or foreign_entries(tmp, partial=True):
            raise FileExistsError(f"synth: {tmp} is in the way and is not an interrupted synth build; "
                                  "it is not deleted. Move it or choose another OUT")
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        summary = _build(tmp, out, cfg, workers, progress)
        _swap(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing half-built is left
        raise
    return summary


def _build(tmp: Path, out: Path, cfg: SynthConfig, workers: int, progress: bool) -> dict:
    """Write the dataset meant for `out` into the empty folder `tmp`; return the summary."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    videos = plan_dataset(cfg)
    work = Path(tempfile.mkdtemp(prefix="_work", dir=tmp))
    frames_dir, wav_dir = work / "frames", work / "audio"
    frames_dir.mkdir()
    wav_dir.mkdir()
    detections = _render_all([(cfg, v, frames_dir, wav_dir) for v in videos], workers, progress)
    det_path = work / "hand_object.json"
    with open(det_path, "w") as f:
        json.dump(detections, f, separators=(",", ":"))
    counts = write_annotations(tmp, cfg, videos)
    timings["render_s"] = time.perf_counter() - t0

    timings.update(_write_stores(cfg, tmp, frames_dir, wav_dir, det_path, workers, progress))
    shutil.rmtree(work)

    timings["total_s"] = time.perf_counter() - t0
    summary = {
        "seed": cfg.seed,
        "params": dataclasses.asdict(cfg),
        "videos": len(videos),
        "frames": sum(v.num_frames for v in videos),
        "segments": sum(len(v.segments) for v in videos),
        "verbs": [VERB_POOL[i].key for i in range(cfg.num_verbs)],
        "nouns": [noun_key(i) for i in range(cfg.num_nouns)],
        "verb_frequencies_hz": [round(float(f), 1) for f in verb_frequencies(cfg)],
        **counts,
        "seconds": {k: round(v, 2) for k, v in timings.items()},
    }
    write_text(tmp / "synth.json", json.dumps(summary, indent=1))
    write_text(tmp / "data.yaml", yaml.safe_dump(data_config(out, unlabelled=cfg.num_unlabelled > 0), sort_keys=False))
    return summary


def _swap(tmp: Path, out: Path) -> None:
    """Rename the finished build `tmp` to `out`. An existing `out` is moved aside first and
    deleted only once the new dataset is in place (moved back if the rename fails)."""
    if not out.exists():
        os.replace(tmp, out)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.replaced-", dir=out.parent))
    os.replace(out, aside / out.name)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(aside / out.name, out)
        aside.rmdir()
        raise
    try:
        shutil.rmtree(aside)
    except OSError as e:
        raise OSError(f"synth: wrote {out}, but could not delete the dataset it replaced, "
                      f"moved to {aside}: {e}") from None


def _render_all(jobs: list[tuple[SynthConfig, VideoPlan, Path, Path]], workers: int, progress: bool) -> dict[str, Any]:
    """Render every video to disk (`workers` processes); return the detections by video id, in
    the order of `jobs` (whatever order the workers finish in)."""
    from egodistill.data.prepare.common import imap_workers
    from egodistill.data.prepare.common import progress as progress_bar

    detections: dict[str, Any] = {}
    with progress_bar(len(jobs), "synth render", progress) as bar:
        for vid, dets in imap_workers(_render_to_disk, jobs, workers):
            detections[vid] = dets
            bar.update(1)
    return {plan.video_id: detections[plan.video_id] for _, plan, _, _ in jobs}


def _write_stores(cfg: SynthConfig, tmp: Path, frames_dir: Path, wav_dir: Path, det_path: Path, workers: int,
                  progress: bool) -> dict[str, float]:
    """Pack the frames, flow, audio and layout stores through the `prepare` code; return timings."""
    from egodistill.data.prepare.flow import prepare_flow
    from egodistill.data.prepare.frames import prepare_frames
    from egodistill.data.prepare.layout import prepare_layout
    from egodistill.data.prepare.video import prepare_audio

    timings = {}
    t = time.perf_counter()
    bars = {"workers": workers, "show_progress": progress}
    prepare_frames(frames_dir, tmp / STORE_FILES["rgb"], fps=cfg.fps, **bars)
    timings["rgb_s"] = time.perf_counter() - t
    t = time.perf_counter()
    prepare_flow(tmp / STORE_FILES["rgb"], tmp / STORE_FILES["flow"], stride=cfg.flow_stride, **bars)
    timings["flow_s"] = time.perf_counter() - t
    t = time.perf_counter()
    prepare_audio(sorted(wav_dir.glob("*.wav")), tmp / STORE_FILES["audio"], sample_rate=cfg.sample_rate, **bars)
    prepare_layout(det_path, tmp / STORE_FILES["layout"], format="hand_object", show_progress=progress)
    timings["audio_layout_s"] = time.perf_counter() - t
    return timings
