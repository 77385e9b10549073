"""Distilling an ensemble of trained teachers into a student (METHOD.md §3 against the ensemble, §4).

The teachers are run folders (`distill.teachers`), each rebuilt from its own resolved config and
best weights, frozen. The `model` section is the student. The loop is the trainer of `train`;
only the objective differs. `egodistill distill` parses its arguments and calls `run_distill`.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from egodistill.config import Config, config_to_dict, resolve_path
from egodistill.pipelines.run_dir import check_can_run, check_run_dir, discard_failed_start, prepare_run_dir

if TYPE_CHECKING:  # the command line imports this module; torch loads only when a run starts
    import torch
    from accelerate import PartialState

    from egodistill.data.records import Sample
    from egodistill.distill.data import CachedViewsDataset
    from egodistill.distill.ensemble import EnsembleTeacher
    from egodistill.distill.teachers import TeacherRun


def check_teacher_data(cfg: Config, teachers: list[TeacherRun]) -> None:
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


def cache_fingerprint(cfg: Config, teachers: list[TeacherRun], weights: dict[str, Any] | None,
                      sample_ids: list[str], temperatures: dict[str, float] | None = None) -> dict[str, Any]:
    """Return what a teacher cache depends on: teachers and their weights' hashes, the weighting
    and its weights, the ensemble's temperatures, the data files (hashes/sizes), the view
    settings, K and the seed."""
    from egodistill.engine.checkpoint import file_digest

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
        # only with a calibrated ensemble, so that the caches made before calibration still match
        **({"temperatures": temperatures} if temperatures else {}),
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
        # only with feature matching, so that the caches made without it still match
        **({"features": cfg.distill.features.teacher} if cfg.distill.features.teacher else {}),
    }


def run_distill(cfg: Config, *, resume: bool = False, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Distil `cfg.distill.teachers` into the student `cfg.model`; return the trainer's summary
    (plus `cache_reused` and `cache_build_s` when a teacher cache is used).

    Writes to `cfg.run_dir`: the trainer's files, `heldout.json` (the teachers' held-out split),
    `dataset_weights.json` (weighting `dataset`) and, with `distill.cache.views > 0`, the
    teacher cache (`teacher_cache.h5` unless `distill.cache.path` is set). With
    `distill.unlabelled`, the student also trains on unlabelled samples (KD term alone; the
    cache covers them; see `egodistill.distill.unlabelled`). The run folder is
    changed only once teachers, annotations and stores are checked; a start that fails before
    anything is saved leaves no run folder behind.
    """
    started = {"fresh": False}
    with discard_failed_start(Path(cfg.run_dir), lambda: started["fresh"]):
        return _run_distill(cfg, resume=resume, overwrite=overwrite, progress=progress, started=started)


def _load_checked(cfg: Config, run_dir: Path, *, resume: bool, overwrite: bool) -> tuple[list, Any, dict[str, int],
                                                                                   list[str]]:
    """Check the run folder, load the teachers and check them against the student and the data;
    return (teachers, annotation reader, the student's heads {name: classes}, the distilled heads)."""
    from egodistill.data.annotations import build_reader
    from egodistill.distill.loss import active_heads
    from egodistill.distill.teachers import check_heads, load_teachers

    for t in cfg.distill.teachers:
        if Path(t).resolve() == run_dir.resolve():
            raise ValueError(f"run_dir {run_dir} is also a teacher (distill.teachers); give the student its own folder")
    check_run_dir(run_dir, resume=resume, overwrite=overwrite, cfg=cfg)
    check_can_run(cfg)
    teachers = load_teachers(cfg.distill.teachers)
    reader = build_reader(cfg)
    student_heads = dict(cfg.model.heads) or reader.info().num_classes
    heads = active_heads(student_heads, cfg.train.head_weights)
    check_heads(teachers, {h: student_heads[h] for h in heads})
    check_teacher_data(cfg, teachers)
    print(f"distill: {len(teachers)} teachers ({', '.join(f'{t.modality}: {t.run_dir}' for t in teachers)}) "
          f"-> {cfg.model.modality} student {cfg.model.arch}; heads {', '.join(f'{h} ({student_heads[h]})' for h in heads)}")
    return teachers, reader, student_heads, heads


def _run_distill(cfg: Config, *, resume: bool, overwrite: bool, progress: bool, started: dict[str, bool]) -> dict[str, Any]:
    """`run_distill`; sets started["fresh"] once the run starts in a new folder."""
    from accelerate import PartialState

    from egodistill.data.dataset import MultimodalDataset
    from egodistill.data.modalities import get_modality
    from egodistill.distill.ensemble import FEATURES, EnsembleTeacher
    from egodistill.distill.unlabelled import mix
    from egodistill.distill.teachers import CALIBRATION_FILE, DATASET_WEIGHTS_FILE
    from egodistill.engine.heldout import write_heldout
    from egodistill.engine.objectives import DistillObjective
    from egodistill.engine.trainer import fit, seed_everything
    from egodistill.models import build_model
    from egodistill.models.heads import FeatureTap, feature_dim

    dcfg = cfg.distill
    run_dir = Path(cfg.run_dir)
    teachers, reader, student_heads, heads = _load_checked(cfg, run_dir, resume=resume, overwrite=overwrite)
    info = reader.info()
    student_modality = cfg.model.modality

    train_samples, heldout_samples, unlabelled = _samples(cfg, reader, teachers)
    # the student's training samples: the labelled ones first, then the unlabelled ones
    student_samples = train_samples + unlabelled
    weights_saved = resume and (run_dir / DATASET_WEIGHTS_FILE).is_file()
    if _needs_dataset_weights(dcfg, bool(unlabelled)) and not heldout_samples and not weights_saved:
        raise ValueError(f"distill.weighting={dcfg.weighting}{' with unlabelled samples' if unlabelled else ''} "
                         f"needs held-out samples, but the teachers' heldout.json is empty")
    if dcfg.calibrate and not heldout_samples and not (resume and (run_dir / CALIBRATION_FILE).is_file()):
        raise ValueError("distill.calibrate fits the ensemble's temperatures on held-out samples, but the teachers' "
                         "heldout.json is empty")
    seed_everything(cfg.train.seed)  # the same initial student as `train` with this seed
    model = build_model(cfg.model, student_heads, get_modality(student_modality).channels(cfg))
    feature_teacher = _feature_teacher(cfg, teachers, model)  # checked before the run folder is written
    started["fresh"] = prepare_run_dir(run_dir, resume=resume, overwrite=overwrite, cfg=cfg)
    # The student is selected on the teachers' held-out split; recorded like a `train` run's.
    write_heldout(run_dir, heldout_samples, fraction=teachers[0].cfg.data.heldout_fraction, seed=teachers[0].cfg.train.seed)

    state = PartialState()  # the device of this process (several processes: one GPU each)
    for t in teachers:
        t.teacher.to(state.device)
    heldout = _HeldoutLogits(cfg, teachers, heldout_samples, heads, state.device, progress)
    weights = _teacher_weights(cfg, teachers, heldout, has_unlabelled=bool(unlabelled), resume=resume)
    ensemble = EnsembleTeacher([t.teacher for t in teachers], dcfg.weighting, dcfg.tau, weights=weights, heads=heads,
                               names=[str(t.run_dir) for t in teachers], feature_teacher=feature_teacher)
    ensemble.temperatures = _ensemble_temperatures(cfg, teachers, ensemble, heldout, resume=resume)

    cached = {h: student_heads[h] for h in heads}
    if feature_teacher is not None:  # the teacher's features are cached beside the logits
        cached[FEATURES] = feature_dim(model)
    train_set, teacher, cache_info = _student_train_set(cfg, teachers, ensemble, weights, student_samples,
                                                        cached, state, progress)
    del ensemble, teachers  # with a cache the teachers never run again: free them
    on = feature_teacher is not None
    objective = DistillObjective(teacher, temperature=dcfg.temperature, alpha_kd=dcfg.alpha_kd,
                                 alpha_gt=dcfg.alpha_gt, head_weights=cfg.train.head_weights,
                                 alpha_feat=dcfg.features.alpha if on else 0.0,
                                 student_features=FeatureTap(model) if on else None)

    train_set = mix(train_set, len(train_samples), dcfg.unlabelled.ratio, cfg.train.seed)
    heldout_set = MultimodalDataset(cfg, heldout_samples, [student_modality], train=False) if heldout_samples else None
    summary = fit(cfg, run_dir, model, objective, train_set, heldout_set, info, resume=resume, progress=progress)
    summary = dict(summary or {})
    summary.update(cache_info)
    return summary


def _samples(cfg: Config, reader, teachers: list[TeacherRun]) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """Return the labelled training samples, the teachers' held-out samples and the unlabelled
    samples (`distill.unlabelled`); checks before the run folder changes that every store is
    there and holds the unlabelled samples' videos."""
    from egodistill.data.dataset import MultimodalDataset
    from egodistill.distill.teachers import shared_heldout_ids
    from egodistill.engine.heldout import split_by_ids

    samples = reader.samples(cfg.data.train_split)
    train_samples, heldout_samples = split_by_ids(samples, shared_heldout_ids(teachers),
                                                  source=str(Path(teachers[0].run_dir) / "heldout.json"))
    unlabelled = _unlabelled(cfg, reader, train_samples, heldout_samples)
    MultimodalDataset(cfg, unlabelled, _modalities(cfg, teachers), train=True)
    return train_samples, heldout_samples, unlabelled


def _modalities(cfg: Config, teachers: list[TeacherRun]) -> list[str]:
    """Return the modalities a distillation reads: the student's, then the teachers' (each once)."""
    return list(dict.fromkeys([cfg.model.modality, *(t.modality for t in teachers)]))


def _feature_teacher(cfg: Config, teachers: list[TeacherRun], student: torch.nn.Module) -> int | None:
    """Return the index of the teacher whose features the student matches (distill.features),
    None when off; raise ValueError when no teacher or several have that modality, or when its
    features are not as wide as the student's."""
    from egodistill.models.heads import feature_dim

    name = cfg.distill.features.teacher
    if not name:
        return None
    found = [i for i, t in enumerate(teachers) if t.modality == name]
    if len(found) != 1:
        have = ", ".join(f"{t.modality} ({t.run_dir})" for t in teachers)
        raise ValueError(f"distill.features.teacher={name!r} must name the modality of exactly one teacher; "
                         f"{'none' if not found else len(found)} of the teachers have it (teachers: {have})")
    t = teachers[found[0]]
    got, want = feature_dim(t.teacher.model), feature_dim(student)
    if got != want:
        raise ValueError(f"distill.features: the {name} teacher {t.run_dir} ({t.cfg.model.arch}) has {got}-wide "
                         f"features, the student ({cfg.model.arch}) {want}: feature matching needs equal widths "
                         f"(e.g. the same architecture)")
    return found[0]


def _student_train_set(cfg: Config, teachers: list[TeacherRun], ensemble: EnsembleTeacher,
                       weights: dict[str, torch.Tensor] | None, student_samples: list[Sample], heads: dict[str, int],
                       state: PartialState, progress: bool) -> tuple[Any, EnsembleTeacher | None, dict[str, Any]]:
    """Return the student's training set, the teacher its objective runs (None: the teacher
    cache replays the ensemble's logits) and what the summary reports of the cache (see
    `_cached_train_set`; empty without a cache)."""
    from egodistill.data.dataset import MultimodalDataset
    from egodistill.distill.data import IndependentViewsDataset

    if cfg.distill.cache.views > 0:
        train_set, cache_info = _cached_train_set(cfg, teachers, ensemble, weights, student_samples, heads, state,
                                                  progress)
        return train_set, None, cache_info
    if cfg.distill.consistent:
        return MultimodalDataset(cfg, student_samples, _modalities(cfg, teachers), train=True), ensemble, {}
    teacher_modalities = list(dict.fromkeys(t.modality for t in teachers))
    return (IndependentViewsDataset(cfg, student_samples, teacher_modalities, cfg.model.modality, train=True),
            ensemble, {})


def _needs_dataset_weights(dcfg, has_unlabelled: bool) -> bool:
    """Return whether distillation computes dataset weights on the held-out split: for
    weighting "dataset", and for "per-sample" when unlabelled samples need a fallback."""
    return dcfg.weighting == "dataset" or (dcfg.weighting == "per-sample" and has_unlabelled)


class _HeldoutLogits:
    """The teachers' logits and labels on the held-out split, computed on first use (one pass
    serves the dataset weights and the ensemble's calibration)."""

    def __init__(self, cfg: Config, teachers: list[TeacherRun], samples: list[Sample], heads: list[str],
                 device: torch.device, progress: bool):
        self.cfg, self.teachers, self.samples, self.heads = cfg, teachers, samples, heads
        self.device, self.progress = device, progress
        self._value: tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None

    def get(self) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        """Return (per-teacher logits {head: [M, C]}, labels {head: [M]})."""
        from egodistill.data.dataset import MultimodalDataset, build_loader
        from egodistill.distill.teachers import heldout_teacher_logits

        if self._value is None:
            cfg = self.cfg
            held = MultimodalDataset(cfg, self.samples, list(dict.fromkeys(t.modality for t in self.teachers)),
                                     train=False)
            loader = build_loader(held, cfg, train=False, batch_size=cfg.train.eval_batch_size, shuffle=False)
            self._value = heldout_teacher_logits(self.teachers, loader, self.heads, self.device, self.progress)
        return self._value


def _teacher_weights(cfg: Config, teachers: list[TeacherRun], heldout: _HeldoutLogits, *, has_unlabelled: bool,
                     resume: bool) -> dict[str, torch.Tensor] | None:
    """Return the dataset-level teacher weights {head: [teachers]} when the weighting needs them
    (`dataset`, or `per-sample` with unlabelled samples, which have no label to weigh by), else
    None. Computed once, on the held-out samples none of the teachers trained on, and written to
    `dataset_weights.json`; a resumed run reads them back."""
    import torch

    from egodistill.atomic import write_json
    from egodistill.distill.teachers import DATASET_WEIGHTS_FILE, dataset_weights_record, read_dataset_weights

    dcfg = cfg.distill
    if not _needs_dataset_weights(dcfg, has_unlabelled):
        return None
    run_dir = Path(cfg.run_dir)
    path = run_dir / DATASET_WEIGHTS_FILE
    if resume and path.is_file():
        weights = read_dataset_weights(run_dir, [str(t.run_dir) for t in teachers], heldout.heads)
    else:
        record = dataset_weights_record(teachers, *heldout.get(), dcfg.tau)
        write_json(path, record)
        weights = {h: torch.tensor(w) for h, w in record["weights"].items()}
    for h in heldout.heads:
        print(f"dataset weights [{h}]: " + ", ".join(f"{t.modality} {float(w):.3f}" for t, w in zip(teachers, weights[h])))
    return weights


def _ensemble_temperatures(cfg: Config, teachers: list[TeacherRun], ensemble: EnsembleTeacher,
                           heldout: _HeldoutLogits, *, resume: bool) -> dict[str, float]:
    """Return the ensemble's temperatures {head: T} with `distill.calibrate` (fitted on the
    held-out split and written to `ensemble_calibration.json`; a resumed run reads them back),
    else {}."""
    from egodistill.atomic import write_json
    from egodistill.distill.teachers import CALIBRATION_FILE, ensemble_calibration_record, read_ensemble_temperatures
    from egodistill.engine.calibration import calibration_lines

    if not cfg.distill.calibrate:
        return {}
    run_dir = Path(cfg.run_dir)
    path = run_dir / CALIBRATION_FILE
    if resume and path.is_file():
        return read_ensemble_temperatures(run_dir, [str(t.run_dir) for t in teachers])
    record = ensemble_calibration_record(teachers, ensemble, *heldout.get())
    record["weighting"] = cfg.distill.weighting
    write_json(path, record)
    print("\n".join(calibration_lines(record, "ensemble calibration")))
    return dict(record["temperature"])


def _cached_train_set(cfg: Config, teachers: list[TeacherRun], ensemble: EnsembleTeacher,
                      weights: dict[str, torch.Tensor] | None, student_samples: list[Sample], heads: dict[str, int],
                      state: PartialState, progress: bool) -> tuple[CachedViewsDataset, dict[str, Any]]:
    """Return the student's training set replaying the teacher cache, and what the summary
    reports of the cache: `cache_reused` and, when it was built, `cache_build_s`.

    The cache is reused when its fingerprint matches, else the main process builds it (the
    others wait, then read it)."""
    from egodistill.data.dataset import MultimodalDataset
    from egodistill.distill.cache import TeacherCache
    from egodistill.distill.data import CachedViewsDataset, build_cache

    dcfg = cfg.distill
    cache_info: dict[str, Any] = {}
    cache_path = Path(dcfg.cache.path) if dcfg.cache.path else Path(cfg.run_dir) / "teacher_cache.h5"
    fp = cache_fingerprint(cfg, teachers, {h: [float(x) for x in w] for h, w in weights.items()} if weights else None,
                           [s.id for s in student_samples], ensemble.temperatures)
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
        teacher_modalities = list(dict.fromkeys(t.modality for t in teachers))
        base = MultimodalDataset(cfg, student_samples, teacher_modalities, train=True)
        cache = build_cache(cache_path, base, ensemble, dcfg.cache.views, fp, heads, seed=cfg.train.seed,
                            batch_size=cfg.train.eval_batch_size, device=state.device, progress=progress)
        cache_info["cache_reused"] = False
        cache_info["cache_build_s"] = time.perf_counter() - t0
    state.wait_for_everyone()
    if not state.is_main_process:
        cache = TeacherCache(cache_path)
    return CachedViewsDataset(cfg, student_samples, cfg.model.modality, cache), cache_info


def _unlabelled(cfg: Config, reader, train_samples: list[Sample], heldout_samples: list[Sample]) -> list[Sample]:
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
