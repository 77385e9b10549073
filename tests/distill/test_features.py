"""distill.features (MARS-style feature matching) on the tiny synthetic dataset: the teacher's
pooled features are cached per view beside the logits, both the cached and the online student
train with the term, and a teacher that is missing or of another width is refused."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from egodistill.config import config_from_dict
from egodistill.data.dataset import MultimodalDataset
from egodistill.data.views import ViewParams
from egodistill.distill.ensemble import FEATURES
from egodistill.distill.teachers import load_teachers
from egodistill.engine.inputs import model_input
from egodistill.data.annotations import build_reader
from egodistill.pipelines.distill import _samples, run_distill
from egodistill.pipelines.train import run_train
from test_cross_architecture import tiny


@pytest.fixture(scope="module")
def teachers(synth_root, tmp_path_factory):
    base = config_from_dict(yaml.safe_load(open(synth_root / "data.yaml")))
    runs = tmp_path_factory.mktemp("features")
    for modality in ("rgb", "flow"):
        run_train(tiny(base, runs / modality, modality, "cnn3d_nano"), progress=False)
    return base, runs, [str(runs / "rgb"), str(runs / "flow")]


def _student(base, runs: Path, name: str, teacher_runs, arch="cnn3d_nano", views=2, teacher="flow"):
    cfg = tiny(base, runs / name, "rgb", arch)
    cfg.distill = dataclasses.replace(
        cfg.distill, teachers=teacher_runs, weighting="dataset", alpha_gt=1.0,
        cache=dataclasses.replace(cfg.distill.cache, views=views, path=str(runs / f"{name}_cache.h5")),
        features=dataclasses.replace(cfg.distill.features, teacher=teacher, alpha=1.0))
    return cfg


def _feature_losses(run_dir: Path) -> list[float]:
    records = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    return [r["loss/feat"] for r in records if r["kind"] == "train"]


def test_cached_features_are_the_flow_teachers_on_the_cached_view(teachers):
    base, runs, teacher_runs = teachers
    cfg = _student(base, runs, "cached", teacher_runs)
    run_distill(cfg, progress=False)
    losses = _feature_losses(runs / "cached")
    assert losses and all(np.isfinite(losses)) and all(v > 0 for v in losses)
    with h5py.File(runs / "cached_cache.h5", "r") as f:
        cached = torch.from_numpy(f[f"logits/{FEATURES}"][1].astype(np.float32))  # sample 0, view 1
        view = ViewParams.from_array(f["views"][1])
    loaded = load_teachers(teacher_runs)
    flow = next(t for t in loaded if t.modality == "flow")
    train, _, unlabelled = _samples(cfg, build_reader(cfg), loaded)  # the cache's samples, in its order
    item = MultimodalDataset(cfg, train + unlabelled, ["flow"], train=True).load(0, [view])
    with torch.no_grad():
        want = flow.teacher.model.features(model_input({"flow": item["flow"][None]}, flow.cfg.model))[0]
    assert cached.shape == want.shape
    torch.testing.assert_close(cached, want, rtol=2e-3, atol=2e-3)  # stored as float16


def test_online_student_trains_with_the_feature_term(teachers):
    base, runs, teacher_runs = teachers
    summary = run_distill(_student(base, runs, "online", teacher_runs, views=0), progress=False)
    assert summary["epoch"] == 1
    assert _feature_losses(runs / "online")


def test_a_missing_teacher_or_another_width_is_refused(teachers):
    base, runs, teacher_runs = teachers
    with pytest.raises(ValueError, match=r"distill.features.teacher='audio' must name the modality of exactly one "
                                         r"teacher; none of the teachers have it \(teachers: rgb"):
        run_distill(_student(base, runs, "no_audio", teacher_runs, teacher="audio"), progress=False)
    with pytest.raises(ValueError, match=r"the flow teacher .* \(cnn3d_nano\) has 96-wide features, the student "
                                         r"\(swin_nano\) 128: feature matching needs equal widths"):
        run_distill(_student(base, runs, "swin", teacher_runs, arch="swin_nano"), progress=False)
    assert not (runs / "no_audio").exists() and not (runs / "swin").exists()  # refused before anything is written
