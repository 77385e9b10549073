"""Cross-architecture distillation on the tiny synthetic dataset: Swin teachers into a 3D-CNN
student, CNN teachers into a Swin student, a CNN student on half the frames, and one teacher
cache serving students of different architectures."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from egodistill.pipelines.distill import run_distill
from egodistill.pipelines.evaluate import run_evaluate
from egodistill.pipelines.train import run_train
from egodistill.config import Config, config_from_dict, load_config


def tiny(base: Config, run_dir: Path, modality: str, arch: str, **model) -> Config:
    cfg = dataclasses.replace(base, data=dataclasses.replace(base.data), train=dataclasses.replace(base.train),
                              distill=dataclasses.replace(base.distill))
    cfg.data.num_frames, cfg.data.stride, cfg.data.size = 4, 2, 32
    cfg.data.test_clips, cfg.data.heldout_fraction = 1, 0.34
    cfg.train.epochs, cfg.train.batch_size, cfg.train.eval_batch_size, cfg.train.workers = 1, 4, 8, 0
    cfg.optim.lr, cfg.optim.warmup_epochs = 1e-3, 0.0
    cfg.model = dataclasses.replace(cfg.model, arch=arch, modality=modality, drop_path=0.0, **model)
    cfg.run_dir, cfg.name = str(run_dir), run_dir.name
    return cfg


@pytest.fixture(scope="module")
def setup(synth_root, tmp_path_factory):
    base = config_from_dict(yaml.safe_load(open(synth_root / "data.yaml")))
    runs = tmp_path_factory.mktemp("xarch")
    teachers = {}
    for family, arch in (("swin", "swin_nano"), ("cnn", "cnn3d_nano")):
        for modality in ("rgb", "flow"):
            run = runs / f"{family}_{modality}"
            run_train(tiny(base, run, modality, arch), progress=False)
            teachers.setdefault(family, []).append(str(run))
    return base, runs, teachers


def _student(base, runs, name, arch, teachers, cache=None, **model) -> Config:
    cfg = tiny(base, runs / name, "rgb", arch, **model)
    cfg.distill = dataclasses.replace(cfg.distill, teachers=teachers, weighting="dataset")
    if cache is not None:
        cfg.distill.cache = dataclasses.replace(cfg.distill.cache, views=2, path=str(cache))
    return cfg


@pytest.mark.parametrize("teachers_of, student_arch, frame_step", [
    ("swin", "cnn3d_nano", 1),  # Swin teachers -> CNN student
    ("cnn", "swin_nano", 1),  # CNN teachers -> Swin student
    ("cnn", "cnn3d_nano", 2),  # a CNN student on half the frames
])
def test_student_of_another_architecture_trains_and_evaluates(setup, teachers_of, student_arch, frame_step):
    base, runs, teachers = setup
    name = f"{teachers_of}_to_{student_arch}_step{frame_step}"
    summary = run_distill(_student(base, runs, name, student_arch, teachers[teachers_of], frame_step=frame_step),
                          progress=False)
    assert summary["epoch"] == 1
    saved = load_config(runs / name / "config.yaml")
    assert saved.model.arch == student_arch and saved.model.frame_step == frame_step
    metrics = run_evaluate(runs / name, progress=False, plots=False)
    assert metrics["num_samples"] > 0 and 0 <= metrics["action_top1"] <= 100


def test_one_teacher_cache_serves_students_of_every_architecture(setup, tmp_path):
    base, runs, teachers = setup
    cache = tmp_path / "cache.h5"
    first = run_distill(_student(base, runs, "cached_cnn", "cnn3d_nano", teachers["swin"], cache), progress=False)
    assert first["cache_reused"] is False
    for name, arch, step in (("cached_swin", "swin_nano", 1), ("cached_cnn_half", "cnn3d_nano", 2)):
        again = run_distill(_student(base, runs, name, arch, teachers["swin"], cache, frame_step=step), progress=False)
        assert again["cache_reused"] is True, name
