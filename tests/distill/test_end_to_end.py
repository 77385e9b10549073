"""End to end on the tiny synthetic dataset: train two teachers (RGB, flow), distil an RGB student
that reads half their frames, evaluate the student and the teacher ensemble; the teacher-logit
cache is built once, reused, and rebuilt when a teacher's weights change."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from egodistill.pipelines.distill import run_distill
from egodistill.pipelines.evaluate import run_evaluate
from egodistill.pipelines.train import run_train
from egodistill.config import Config
from egodistill.distill.cache import TeacherCache


def tiny(cfg: Config, run_dir: Path, modality: str, **model) -> Config:
    cfg = dataclasses.replace(cfg)
    cfg.data.num_frames, cfg.data.stride, cfg.data.size = 4, 2, 32
    cfg.data.test_clips, cfg.data.heldout_fraction = 1, 0.34
    cfg.train.epochs, cfg.train.batch_size, cfg.train.eval_batch_size, cfg.train.workers = 1, 4, 8, 0
    cfg.optim.lr, cfg.optim.warmup_epochs = 1e-3, 0.0
    cfg.model = dataclasses.replace(cfg.model, arch="swin_nano", modality=modality, drop_path=0.0, **model)
    cfg.run_dir, cfg.name = str(run_dir), run_dir.name
    return cfg


@pytest.fixture(scope="module")
def teachers(synth_root, tmp_path_factory) -> tuple[Path, list[str]]:
    from egodistill.config import config_from_dict
    import yaml

    base = config_from_dict(yaml.safe_load(open(synth_root / "data.yaml")))
    runs = tmp_path_factory.mktemp("runs")
    dirs = []
    for m in ("rgb", "flow"):
        run_train(tiny(dataclasses.replace(base, data=dataclasses.replace(base.data)), runs / m, m), progress=False)
        dirs.append(str(runs / m))
    return runs, dirs


def student_cfg(synth_config, runs: Path, name: str, teacher_dirs: list[str], **distill) -> Config:
    cfg = tiny(synth_config, runs / name, "rgb", frame_step=2)
    cfg.distill = dataclasses.replace(cfg.distill, teachers=teacher_dirs, **distill)
    return cfg


def test_teachers_distil_into_a_student_that_evaluates(synth_config, teachers):
    runs, dirs = teachers
    cfg = student_cfg(synth_config, runs, "student", dirs, weighting="dataset")
    summary = run_distill(cfg, progress=False)
    run = runs / "student"
    assert (run / "model.safetensors").is_file() and summary["epoch"] == 1
    # the held-out split is the teachers' one; the dataset weights were computed on it
    assert json.loads((run / "heldout.json").read_text())["ids"] == json.loads((runs / "rgb" / "heldout.json").read_text())["ids"]
    weights = json.loads((run / "dataset_weights.json").read_text())
    assert weights["modalities"] == ["rgb", "flow"] and weights["samples"] > 0
    for h in ("verb", "noun"):
        w = torch.tensor(weights["weights"][h])
        assert w.sum().item() == pytest.approx(1.0, abs=1e-6)
        # softmin of the recorded mean cross-entropies
        assert torch.allclose(w, torch.softmax(-torch.tensor(weights["mean_ce"][h]) / cfg.distill.tau, 0), atol=1e-6)
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("loss/kd" in r for r in log)

    student = run_evaluate(run, progress=False, plots=False)
    ensemble = run_evaluate(run, teachers=True, progress=False, plots=False)
    for metrics in (student, ensemble):
        assert metrics["num_samples"] > 0 and 0 <= metrics["action_top1"] <= 100 and "verb_ece" in metrics
    assert (run / "predictions" / "validation_teachers.safetensors").is_file()


def test_cache_is_built_once_reused_and_rebuilt_when_a_teacher_changes(synth_config, teachers, tmp_path):
    runs, dirs = teachers
    cache_path = tmp_path / "cache.h5"
    cfg = student_cfg(synth_config, runs, "cached", dirs, weighting="uniform")
    cfg.distill.cache = dataclasses.replace(cfg.distill.cache, views=2, path=str(cache_path))
    first = run_distill(cfg, progress=False)
    assert first["cache_reused"] is False and cache_path.is_file()
    cache = TeacherCache(cache_path)
    assert cache.views == 2 and cache.fingerprint["weighting"] == "uniform"
    from safetensors.torch import load_file, save_file

    weights_first = load_file(runs / "cached" / "model.safetensors")
    again = run_distill(cfg, overwrite=True, progress=False)
    assert again["cache_reused"] is True
    # the same student replaying the same cached views ends with the same weights
    weights_again = load_file(runs / "cached" / "model.safetensors")
    assert all(torch.equal(weights_first[k], weights_again[k]) for k in weights_first)
    # a teacher retrained (other weights) invalidates the cache

    path = Path(dirs[1]) / "model.safetensors"
    state = load_file(path)
    try:
        changed = {k: (v + 0.01 if v.is_floating_point() else v) for k, v in state.items()}
        save_file(changed, path)
        rebuilt = run_distill(cfg, overwrite=True, progress=False)
        assert rebuilt["cache_reused"] is False
    finally:
        save_file(state, path)


def test_distillation_fits_caches_and_evaluates_the_calibrated_ensemble(synth_config, teachers, tmp_path):
    from egodistill.distill.teachers import load_ensemble

    runs, dirs = teachers
    caches = {}
    for calibrate in (False, True):
        cfg = student_cfg(synth_config, runs, f"calibrate_{calibrate}", dirs, weighting="dataset", calibrate=calibrate)
        cfg.distill.cache = type(cfg.distill.cache)(views=1, path=str(tmp_path / f"cache_{calibrate}.h5"))
        run_distill(cfg, progress=False)
        caches[calibrate] = TeacherCache(tmp_path / f"cache_{calibrate}.h5")
    run = runs / "calibrate_True"
    rec = json.loads((run / "ensemble_calibration.json").read_text())
    assert rec["teachers"] == dirs and rec["weighting"] == "dataset" and rec["samples"] > 0
    temps = rec["temperature"]
    assert set(temps) == {"verb", "noun"} and all(t > 0 for t in temps.values())
    for h in temps:
        assert rec["nll"][h][1] <= rec["nll"][h][0] + 1e-9
        # the cached targets are the uncalibrated ensemble's divided by the head's temperature
        plain, scaled = (torch.from_numpy(caches[c].logits(0, 0)[h]).float() for c in (False, True))
        assert torch.allclose(scaled, plain / temps[h], rtol=2e-3, atol=2e-3)
    assert not (runs / "calibrate_False" / "ensemble_calibration.json").exists()
    ensemble, _, _ = load_ensemble(run)
    assert ensemble.temperatures == pytest.approx(temps)
    assert load_ensemble(runs / "calibrate_False")[0].temperatures == {}


def test_independent_views_and_per_sample_weights_train(synth_config, teachers):
    runs, dirs = teachers
    cfg = student_cfg(synth_config, runs, "indep", dirs, weighting="per-sample", consistent=False)
    assert run_distill(cfg, progress=False)["epoch"] == 1
    assert not (runs / "indep" / "dataset_weights.json").exists()


def test_class_count_mismatch_fails_at_start(synth_config, teachers):
    runs, dirs = teachers
    cfg = student_cfg(synth_config, runs, "bad", dirs)
    cfg.model.heads = {"verb": 5, "noun": 4}
    with pytest.raises(ValueError, match=r"head 'verb': teacher .*rgb has 4 classes, the student has 5"):
        run_distill(cfg, progress=False)
    assert not (runs / "bad").exists()


def unlabelled_cfg(synth_unlabelled_root, runs: Path, name: str, teacher_dirs: list[str], **distill) -> Config:
    """The student's config on the tiny dataset with unlabelled videos (its labelled videos are
    the teachers' ones)."""
    from egodistill.config import config_from_dict
    import yaml

    base = config_from_dict(yaml.safe_load(open(synth_unlabelled_root / "data.yaml")))
    cfg = tiny(base, runs / name, "rgb")
    cfg.distill = dataclasses.replace(cfg.distill, teachers=teacher_dirs, **distill)
    return cfg


def test_unlabelled_clips_cached_per_sample_weights_and_a_ratio(synth_unlabelled_root, teachers):
    from egodistill.data.annotations import build_reader

    runs, dirs = teachers
    cfg = unlabelled_cfg(synth_unlabelled_root, runs, "unlabelled", dirs, weighting="per-sample", alpha_gt=1.0)
    cfg.distill.cache = dataclasses.replace(cfg.distill.cache, views=2)
    cfg.distill.unlabelled = dataclasses.replace(cfg.distill.unlabelled, split="unlabelled", ratio=1.0)
    summary = run_distill(cfg, progress=False)
    run = runs / "unlabelled"
    assert summary["epoch"] == 1
    reader = build_reader(cfg)
    heldout = json.loads((run / "heldout.json").read_text())
    assert heldout["ids"] == json.loads((runs / "rgb" / "heldout.json").read_text())["ids"]  # labelled only
    train_ids = [s.id for s in reader.samples("train") if s.id not in set(heldout["ids"])]
    # the cache covers the labelled training samples, then the unlabelled ones
    assert TeacherCache(run / "teacher_cache.h5").ids == train_ids + [s.id for s in reader.samples("unlabelled")]
    # per-sample weighting falls back to the dataset weights on unlabelled samples: computed, recorded
    assert (run / "dataset_weights.json").is_file()
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("loss/kd" in r and "loss/gt" in r for r in log)


@pytest.mark.slow  # ~10 s: online teachers on every batch
def test_unlabelled_windows_online_with_the_label_loss(synth_unlabelled_root, teachers, capsys):
    """Online distillation (no cache) on labelled samples + windows of an unlabelled video and of
    a held-out video (left out): batches mixing labelled and unlabelled samples train with a_gt 1."""
    from egodistill.data.annotations import build_reader

    runs, dirs = teachers
    cfg = unlabelled_cfg(synth_unlabelled_root, runs, "windows", dirs, weighting="uniform", alpha_gt=1.0)
    held_video = json.loads((runs / "rgb" / "heldout.json").read_text())["videos"][0]
    video = build_reader(cfg).samples("unlabelled")[0].video_id
    cfg.distill.unlabelled = dataclasses.replace(cfg.distill.unlabelled, videos=[video, held_video], window=8, hop=6)
    assert run_distill(cfg, progress=False)["epoch"] == 1
    out = capsys.readouterr().out
    assert "unlabelled samples from 1 videos" in out and "of held-out videos left out" in out
    cfg.distill.unlabelled = dataclasses.replace(cfg.distill.unlabelled, videos=["P77_01"])
    with pytest.raises(KeyError, match="video 'P77_01' is not in the rgb store"):
        run_distill(cfg, overwrite=True, progress=False)
