"""`egodistill distill CONFIG [key=value ...]`: distil an ensemble of trained teachers into a student.

The teachers are run folders (`distill.teachers`), each rebuilt from its own resolved config and
best weights, frozen. The `model` section is the student. The loop is the trainer of `train`;
only the objective differs (METHOD.md §3 against the ensemble, §4).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from egodistill.commands.train import add_run_arguments, summary_line
from egodistill.config import Config, load_config, resolve_path

ORDER = 40


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "distill",
        help="distil trained teachers (any modalities) into a student (RGB by default)",
        description=(
            "Distil the weighted ensemble of trained unimodal teachers (distill.teachers: their run "
            "folders) into the student described by the config's model section. Weighting: "
            "distill.weighting=uniform|per-sample|dataset. distill.cache.views=K precomputes K views "
            "per sample with the ensemble's logits so that training never runs a teacher."
        ),
    )
    add_run_arguments(p, "configs/epic100/distill.yaml", "distill.cache.views=8")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    summary = run_distill(cfg, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    print(f"distilled into {cfg.run_dir}: {summary_line(summary)}")
    return 0


def check_teacher_data(cfg: Config, teachers) -> None:
    """Raise when a teacher was trained on other annotations or on views the student's config
    cannot give it (frames, sampler, stride, size)."""
    for t in teachers:
        td = t.cfg.data
        for key in ("reader", "num_frames", "sampler", "stride", "size"):
            if getattr(td, key) != getattr(cfg.data, key):
                raise ValueError(
                    f"teacher {t.run_dir} was trained with data.{key}={getattr(td, key)!r} but this distillation uses "
                    f"data.{key}={getattr(cfg.data, key)!r}; the teachers must see the views they were trained on "
                    f"(a student with fewer frames sets model.frame_step instead)")
        if t.modality not in cfg.data.stores:
            raise ValueError(f"teacher {t.run_dir} reads '{t.modality}' but data.stores has no '{t.modality}' store")


def cache_fingerprint(cfg: Config, teachers, weights: dict[str, Any] | None, sample_ids: list[str]) -> dict[str, Any]:
    """Return what a teacher cache depends on: teachers and their weights' hashes, the weighting
    and its weights, the data files (hashes/sizes), the view settings, K and the seed."""
    import hashlib

    from egodistill.config import config_to_dict
    from egodistill.distill.cache import file_digest

    modalities = sorted({t.modality for t in teachers})
    data = config_to_dict(cfg.data)
    return {
        "teachers": [
            {"run_dir": str(Path(t.run_dir).resolve()), "modality": t.modality,
             "weights": file_digest(Path(t.run_dir) / "model.safetensors")}
            for t in teachers
        ],
        "weighting": cfg.distill.weighting,
        "tau": cfg.distill.tau,
        "dataset_weights": weights,
        "annotations": {k: file_digest(resolve_path(cfg, v)) for k, v in sorted(cfg.data.files.items())},
        "stores": {m: file_digest(resolve_path(cfg, cfg.data.stores[m])) for m in modalities},
        # What draws and renders the training views; not where files are, nor test views, nor
        # uint8_frames (the same normalised input either way, so the same logits).
        "views_config": {k: v for k, v in data.items()
                         if k not in ("root", "files", "stores", "test_clips", "test_crops", "uint8_frames")},
        "samples": hashlib.sha256("\n".join(sample_ids).encode()).hexdigest(),
        "num_samples": len(sample_ids),
        "views": cfg.distill.cache.views,
        "seed": cfg.train.seed,
    }


def run_distill(cfg: Config, *, resume: bool = False, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Distil `cfg.distill.teachers` into the student `cfg.model`; return the trainer's summary.

    Writes to `cfg.run_dir`: the trainer's files, `heldout.json` (the teachers' held-out split),
    `dataset_weights.json` (weighting `dataset`) and, with `distill.cache.views > 0`, the
    teacher cache (`teacher_cache.h5` unless `distill.cache.path` is set). With
    `distill.unlabelled`, the student also trains on unlabelled samples (KD term alone; the
    cache covers them; see `egodistill.distill.unlabelled`). The run folder is
    changed only once teachers, annotations and stores are checked; a start that fails before
    anything is saved leaves no run folder behind.
    """
    from egodistill.commands.train import discard_failed_start

    started = {"fresh": False}
    with discard_failed_start(Path(cfg.run_dir), lambda: started["fresh"]):
        return _run_distill(cfg, resume=resume, overwrite=overwrite, progress=progress, started=started)


def _run_distill(cfg: Config, *, resume: bool, overwrite: bool, progress: bool, started: dict[str, bool]) -> dict[str, Any]:
    """`run_distill`; sets started["fresh"] once the run starts in a new folder."""
    import torch
    from accelerate import PartialState

    from egodistill.data.annotations import build_reader
    from egodistill.data.dataset import MultimodalDataset
    from egodistill.data.modalities import get_modality
    from egodistill.distill.cache import TeacherCache
    from egodistill.distill.data import CachedViewsDataset, IndependentViewsDataset, build_cache
    from egodistill.distill.ensemble import EnsembleTeacher
    from egodistill.distill.loss import active_heads
    from egodistill.engine.objectives import DistillObjective
    from egodistill.distill.unlabelled import mix
    from egodistill.distill.teachers import (
        DATASET_WEIGHTS_FILE,
        check_heads,
        compute_dataset_weights,
        load_teachers,
        read_dataset_weights,
        shared_heldout_ids,
    )
    from egodistill.engine.checkpoint import write_json
    from egodistill.engine.heldout import split_by_ids, write_heldout
    from egodistill.commands.train import check_run_dir, prepare_run_dir
    from egodistill.engine.trainer import fit, seed_everything
    from egodistill.models import build_model

    dcfg = cfg.distill
    run_dir = Path(cfg.run_dir)
    for t in dcfg.teachers:
        if Path(t).resolve() == run_dir.resolve():
            raise ValueError(f"run_dir {run_dir} is also a teacher (distill.teachers); give the student its own folder")
    check_run_dir(run_dir, resume=resume, overwrite=overwrite, cfg=cfg)
    teachers = load_teachers(dcfg.teachers)
    reader = build_reader(cfg)
    info = reader.info()
    student_heads = dict(cfg.model.heads) or info.num_classes
    heads = active_heads(student_heads, cfg.train.head_weights)
    check_heads(teachers, {h: student_heads[h] for h in heads})
    check_teacher_data(cfg, teachers)
    student_modality = cfg.model.modality
    teacher_modalities = list(dict.fromkeys(t.modality for t in teachers))
    modalities = list(dict.fromkeys([student_modality, *teacher_modalities]))
    print(f"distill: {len(teachers)} teachers ({', '.join(f'{t.modality}: {t.run_dir}' for t in teachers)}) "
          f"-> {student_modality} student {cfg.model.arch}; heads {', '.join(f'{h} ({student_heads[h]})' for h in heads)}")

    samples = reader.samples(cfg.data.train_split)
    train_samples, heldout_samples = split_by_ids(samples, shared_heldout_ids(teachers),
                                                  source=str(Path(teachers[0].run_dir) / "heldout.json"))
    unlabelled = _unlabelled(cfg, reader, train_samples, heldout_samples)
    # the student's training samples: the labelled ones first, then the unlabelled ones
    student_samples = train_samples + unlabelled
    # every store is there and holds the unlabelled samples' videos, before the folder changes
    MultimodalDataset(cfg, unlabelled, modalities, train=True)
    started["fresh"] = prepare_run_dir(run_dir, resume=resume, overwrite=overwrite, cfg=cfg)
    # The student is selected on the teachers' held-out split; recorded like a `train` run's.
    write_heldout(run_dir, heldout_samples, fraction=teachers[0].cfg.data.heldout_fraction, seed=teachers[0].cfg.train.seed)

    state = PartialState()  # the device of this process (several processes: one GPU each)
    device = state.device
    for t in teachers:
        t.teacher.to(device)

    # Dataset-level weights: once, on samples none of the teachers trained on.
    weights = None
    weights_record = None
    # per-sample weighting needs a label: unlabelled samples fall back to the dataset weights
    if dcfg.weighting == "dataset" or (dcfg.weighting == "per-sample" and unlabelled):
        path = run_dir / DATASET_WEIGHTS_FILE
        if resume and path.is_file():
            weights = read_dataset_weights(run_dir, [str(t.run_dir) for t in teachers])
        else:
            if not heldout_samples:
                raise ValueError(f"distill.weighting={dcfg.weighting}{' with unlabelled samples' if unlabelled else ''} "
                                 f"needs held-out samples, but the teachers' heldout.json is empty")
            held = MultimodalDataset(cfg, heldout_samples, teacher_modalities, train=False)
            loader = _loader(held, cfg, cfg.train.eval_batch_size)
            weights_record = compute_dataset_weights(teachers, loader, heads, dcfg.tau, device, progress)
            write_json(path, weights_record)
            weights = {h: torch.tensor(w) for h, w in weights_record["weights"].items()}
        for h in heads:
            print(f"dataset weights [{h}]: " + ", ".join(f"{t.modality} {float(w):.3f}" for t, w in zip(teachers, weights[h])))

    ensemble = EnsembleTeacher([t.teacher for t in teachers], dcfg.weighting, dcfg.tau, weights=weights, heads=heads,
                               names=[str(t.run_dir) for t in teachers])

    cache_info: dict[str, Any] = {}
    if dcfg.cache.views > 0:
        cache_path = Path(dcfg.cache.path) if dcfg.cache.path else run_dir / "teacher_cache.h5"
        fp = cache_fingerprint(cfg, teachers, {h: [float(x) for x in w] for h, w in weights.items()} if weights else None,
                               [s.id for s in student_samples])
        # several processes: the main one builds, the others wait and read
        cache = TeacherCache(cache_path) if cache_path.is_file() else None
        if cache is not None and cache.matches(fp):
            print(f"teacher cache: reusing {cache_path} ({len(cache)} samples x {cache.views} views)")
            cache_info["cache_reused"] = True
        elif state.is_main_process:
            if cache is not None:
                print(f"teacher cache: {cache_path} was made from other teachers, weights or data; rebuilding")
            print(f"teacher cache: running the teachers once on {len(student_samples)} samples x {dcfg.cache.views} views "
                  f"-> {cache_path}")
            t0 = time.perf_counter()
            base = MultimodalDataset(cfg, student_samples, teacher_modalities, train=True)
            cache = build_cache(cache_path, base, ensemble, dcfg.cache.views, fp, {h: student_heads[h] for h in heads},
                                seed=cfg.train.seed, batch_size=cfg.train.eval_batch_size, workers=cfg.train.workers,
                                device=device, progress=progress)
            cache_info["cache_reused"] = False
            cache_info["cache_build_s"] = time.perf_counter() - t0
        state.wait_for_everyone()
        if not state.is_main_process:
            cache = TeacherCache(cache_path)
        train_set = CachedViewsDataset(cfg, student_samples, student_modality, cache)
        # The teachers never run again: free them.
        objective = DistillObjective(None, temperature=dcfg.temperature, alpha_kd=dcfg.alpha_kd,
                                     alpha_gt=dcfg.alpha_gt, head_weights=cfg.train.head_weights)
        del ensemble, teachers
    else:
        if dcfg.consistent:
            train_set = MultimodalDataset(cfg, student_samples, modalities, train=True)
        else:
            train_set = IndependentViewsDataset(cfg, student_samples, teacher_modalities, student_modality, train=True)
        objective = DistillObjective(ensemble, temperature=dcfg.temperature, alpha_kd=dcfg.alpha_kd,
                                     alpha_gt=dcfg.alpha_gt, head_weights=cfg.train.head_weights)

    train_set = mix(train_set, len(train_samples), dcfg.unlabelled.ratio, cfg.train.seed)
    heldout_set = MultimodalDataset(cfg, heldout_samples, [student_modality], train=False) if heldout_samples else None
    seed_everything(cfg.train.seed)  # the same initial student as `train` with this seed
    model = build_model(cfg.model, student_heads, get_modality(student_modality).channels(cfg))
    summary = fit(cfg, run_dir, model, objective, train_set, heldout_set, info, resume=resume, progress=progress)
    summary = dict(summary or {})
    summary.update(cache_info)
    return summary


def _unlabelled(cfg: Config, reader, train_samples, heldout_samples) -> list:
    """Return the unlabelled samples of `distill.unlabelled` that the student trains on: those of
    held-out videos are left out (the held-out split selects the student and weighs the
    teachers), ids must not repeat; prints what is used."""
    from egodistill.distill.unlabelled import check_ids, drop_videos, unlabelled_samples

    u = cfg.distill.unlabelled
    samples = unlabelled_samples(cfg, reader)
    if not samples:
        if u.split or u.videos:
            raise ValueError(f"distill.unlabelled names no samples (split {u.split!r}: empty, videos {u.videos})")
        return []
    samples, dropped = drop_videos(samples, {s.video_id for s in heldout_samples})
    if not samples:
        raise ValueError("distill.unlabelled: every unlabelled sample is from a held-out video (heldout.json), and "
                         "held-out videos are only for selecting the student and weighing the teachers")
    check_ids(train_samples, samples, "distill.unlabelled")
    per_epoch = len(samples) if u.ratio <= 0 else max(1, round(u.ratio * len(train_samples)))
    print(f"distill: {len(samples)} unlabelled samples from {len({s.video_id for s in samples})} videos"
          f"{f' ({dropped} of held-out videos left out)' if dropped else ''}; each epoch: {len(train_samples)} "
          f"labelled + {per_epoch} unlabelled (KD term alone)")
    return samples


def _loader(dataset, cfg: Config, batch_size: int):
    from egodistill.data.dataset import build_loader

    return build_loader(dataset, cfg, train=False, batch_size=batch_size, shuffle=False)
