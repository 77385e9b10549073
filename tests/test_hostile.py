"""Hostile and careless input through the command line (issue 14): nothing already written is
lost or left half-written, no Python traceback for a user error, no silently wrong result.

Every case runs `egodistill.cli.main([...])` where the issue speaks of the CLI, on the tiny
synthetic dataset of conftest.py (copied where a case damages it).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from egodistill import cli

TINY = {
    "model": {"arch": "swin", "preset": "swin_nano", "drop_path": 0.1},  # read by old and new schemas
    "data": {"num_frames": 4, "stride": 1, "size": 32, "test_clips": 2, "test_crops": 1, "heldout_fraction": 0.5},
    "optim": {"lr": 1e-3, "warmup_epochs": 0.5},
    "train": {"epochs": 1, "batch_size": 1, "grad_accum": 2, "eval_batch_size": 4, "workers": 0, "log_every": 1},
}


def tiny_config(data_root: Path, path: Path, run_dir: Path, **sections) -> Path:
    """Write a tiny training config over the synthetic dataset at `data_root`."""
    with open(data_root / "data.yaml") as f:
        data = yaml.safe_load(f)["data"]
    tree = json.loads(json.dumps(TINY))
    tree["data"].update(data)
    tree["data"]["root"] = str(data_root)
    for name, values in sections.items():
        tree.setdefault(name, {}).update(values)
    tree["run_dir"] = str(run_dir)
    path.write_text(yaml.safe_dump(tree))
    return path


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Return (exit code, stdout, stderr) of `egodistill ARGV`; fails on a Python traceback."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out, err
    return code, out, err


def snapshot(folder: Path) -> dict[str, bytes]:
    """Return {relative path: bytes} of every file under `folder`."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def data_copy(synth_root: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny dataset, free to damage."""
    dst = tmp_path / "data"
    shutil.copytree(synth_root, dst)
    return dst


@pytest.fixture(scope="module")
def trained_run(synth_root: Path, tmp_path_factory) -> Path:
    """A tiny RGB run (one epoch) trained through the CLI; copy it before changing it."""
    tmp = tmp_path_factory.mktemp("hostile_run")
    cfg = tiny_config(synth_root, tmp / "cfg.yaml", tmp / "rgb")
    assert cli.main(["train", str(cfg), "--no-progress"]) == 0
    return tmp / "rgb"


# ---------------------------------------------------------------------------------------------
# 1. --overwrite never loses data
# ---------------------------------------------------------------------------------------------


def test_overwrite_refuses_the_data_folder(data_copy: Path, tmp_path: Path, capsys):
    """`train base.yaml run_dir=DATA data.root=DATA --overwrite` used to empty the dataset."""
    cfg = tiny_config(data_copy, tmp_path / "cfg.yaml", tmp_path / "unused")
    before = snapshot(data_copy)
    code, _, err = run_cli(capsys, "train", cfg, f"run_dir={data_copy}", f"data.root={data_copy}",
                           "--overwrite", "--no-progress")
    assert code == 1
    assert str(data_copy) in err and "config.yaml" in err
    assert snapshot(data_copy) == before


def test_overwrite_refuses_a_folder_that_is_not_a_run(synth_root: Path, tmp_path: Path, capsys):
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("precious")
    (folder / "config.yaml").write_text("latex: {engine: xelatex}\n")  # someone else's config.yaml
    cfg = tiny_config(synth_root, tmp_path / "cfg.yaml", folder)
    code, _, err = run_cli(capsys, "train", cfg, "--overwrite", "--no-progress")
    assert code == 1 and "not a run folder" in err
    assert (folder / "chapter1.tex").read_text() == "precious"


def test_overwrite_with_broken_annotations_keeps_the_trained_run(trained_run: Path, data_copy: Path,
                                                                   tmp_path: Path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = snapshot(run)
    (data_copy / "annotations" / "EPIC_100_train.csv").write_text("not,an,epic\nfile\n")
    cfg = tiny_config(data_copy, tmp_path / "cfg.yaml", run)
    code, _, err = run_cli(capsys, "train", cfg, "--overwrite", "--no-progress")
    assert code == 1 and "EPIC_100_train.csv" in err
    assert snapshot(run) == before


def test_overwrite_with_a_missing_store_keeps_the_trained_run(trained_run: Path, synth_root: Path,
                                                              tmp_path: Path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = snapshot(run)
    cfg = tiny_config(synth_root, tmp_path / "cfg.yaml", run)
    code, _, err = run_cli(capsys, "train", cfg, "data.stores.rgb=missing.h5", "--overwrite", "--no-progress")
    assert code == 1 and "missing.h5" in err
    assert snapshot(run) == before


def test_overwrite_replaces_a_run(trained_run: Path, synth_root: Path, tmp_path: Path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "stale.txt").write_text("x")
    cfg = tiny_config(synth_root, tmp_path / "cfg.yaml", run, train={"max_steps": 1})
    code, _, _ = run_cli(capsys, "train", cfg, "--overwrite", "--no-progress")
    assert code == 0
    assert not (run / "stale.txt").exists() and (run / "model.safetensors").is_file()


def test_distill_overwrite_refuses_a_folder_that_is_not_a_run(trained_run: Path, synth_root: Path,
                                                              tmp_path: Path, capsys):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "todo.txt").write_text("keep me")
    cfg = tiny_config(synth_root, tmp_path / "cfg.yaml", folder,
                      distill={"teachers": [str(trained_run)], "weighting": "uniform"})
    code, _, err = run_cli(capsys, "distill", cfg, "--overwrite", "--no-progress")
    assert code == 1 and "not a run folder" in err
    assert (folder / "todo.txt").read_text() == "keep me"


def test_failed_start_leaves_no_run_folder(synth_root: Path, tmp_path: Path, capsys):
    """A run that fails before saving anything (here: its RGB store is not HDF5) leaves no folder
    that would force --overwrite on the next, corrected, attempt."""
    bad = tmp_path / "bad.h5"
    bad.write_text("this is not HDF5")
    run = tmp_path / "run"
    cfg = tiny_config(synth_root, tmp_path / "cfg.yaml", run, train={"max_steps": 1})
    code, _, err = run_cli(capsys, "train", cfg, f"data.stores.rgb={bad}", "--no-progress")
    assert code == 1 and str(bad) in err
    assert not run.exists()
    code, _, _ = run_cli(capsys, "train", cfg, "--no-progress")
    assert code == 0 and (run / "model.safetensors").is_file()


# ---------------------------------------------------------------------------------------------
# 2. NaN logits are never a right answer
# ---------------------------------------------------------------------------------------------


def strict_json(text: str):
    """json.loads that refuses the non-standard NaN / Infinity constants."""
    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def nan_run(trained_run: Path, dst: Path) -> Path:
    """A copy of `trained_run` whose best weights are all NaN (a diverged training)."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(trained_run, dst)
    weights = load_file(str(dst / "model.safetensors"))
    save_file({k: v * float("nan") if v.is_floating_point() else v for k, v in weights.items()},
              str(dst / "model.safetensors"))
    assert not all(torch.isfinite(v).all() for v in load_file(str(dst / "model.safetensors")).values())
    return dst


def tiny_mp4(path: Path, frames: int = 12) -> Path:
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 48, 36, "yuv420p"
        for _ in range(frames):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (36, 48, 3), dtype=np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def test_nan_scores_never_rank_first():
    import torch

    from egodistill.engine.metrics import epic_action_rank, topk_correct, true_class_rank

    nan = float("nan")
    scores = torch.tensor([[nan, nan, nan], [0.1, nan, 0.2], [0.5, 0.2, 0.3]])
    labels = torch.tensor([0, 2, 0])
    assert topk_correct(scores, labels, 1).tolist() == [False, False, True]
    assert topk_correct(scores, labels, 5).tolist() == [False, False, True]  # top-5 of 3 classes
    assert int(true_class_rank(scores, labels)[2]) == 0
    probs = torch.tensor([[nan, nan], [0.9, 0.1]])
    rank, conf = epic_action_rank(probs, probs, torch.tensor([0, 0]), torch.tensor([0, 0]))
    assert rank.tolist()[0] >= 5 and int(rank[1]) == 0


def test_compute_metrics_on_nan_logits_is_zero_and_finite(trained_run: Path):
    import math

    import torch

    from egodistill.config import load_config
    from egodistill.data.annotations import build_reader
    from egodistill.engine.metrics import compute_metrics

    cfg = load_config(trained_run / "config.yaml")
    reader = build_reader(cfg)
    info, samples = reader.info(), reader.samples("validation")
    logits = {h: torch.full((len(samples), len(names)), float("nan")) for h, names in info.heads.items()}
    metrics = compute_metrics(logits, samples, info)
    assert metrics["verb_top1"] == 0 and metrics["noun_top5"] == 0 and metrics["action_top1"] == 0
    assert all(math.isfinite(v) for v in metrics.values()), metrics


def test_diverged_training_keeps_no_nan_best_checkpoint(synth_root: Path, tmp_path: Path, capsys):
    """optim.lr=1e6: training stops on NaN, and the held-out selection never took NaN logits
    (scored as 100% right) as the best model."""
    run = tmp_path / "run"
    cfg = tiny_config(synth_root, tmp_path / "cfg.yaml", run, optim={"lr": 1e6},
                      train={"grad_accum": 3, "epochs": 2})
    code, _, err = run_cli(capsys, "train", cfg, "--no-progress")
    assert code == 1 and "NaN" in err
    if (run / "model.safetensors").is_file():
        code, out, err = run_cli(capsys, "evaluate", run, "--no-plots", "--no-progress")
        assert "100.00" not in out
    for line in (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").is_file() else []:
        record = strict_json(line)
        assert not (record.get("best") and record.get("selected") == 100.0), record


def test_evaluate_nan_model_reports_no_accuracy_and_writes_standard_json(trained_run: Path, tmp_path: Path, capsys):
    run = nan_run(trained_run, tmp_path / "run")
    code, out, err = run_cli(capsys, "evaluate", run, "--no-plots", "--no-progress")
    assert code == 0 and "NaN" in err  # said, not silent
    metrics = strict_json((run / "predictions" / "validation_metrics.json").read_text())
    assert metrics["verb_top1"] == 0 and metrics["action_top1"] == 0
    assert "100.00" not in out


def test_export_epic_refuses_nan_scores(trained_run: Path, tmp_path: Path, capsys):
    run = nan_run(trained_run, tmp_path / "run")
    target = tmp_path / "submission.json"
    code, _, err = run_cli(capsys, "evaluate", run, "--no-plots", "--no-progress", "--export-epic", target)
    assert code == 1 and "NaN" in err
    assert not target.exists() and not list(tmp_path.glob("submission.json*"))


def test_predict_refuses_nan_logits(trained_run: Path, tmp_path: Path, capsys):
    run = nan_run(trained_run, tmp_path / "run")
    video = tiny_mp4(tmp_path / "clip.mp4")
    for extra in ([], ["--json"]):
        code, out, err = run_cli(capsys, "predict", video, "--run", run, *extra)
        assert code == 1 and "clip.mp4" in err and "NaN" in err
        assert "nan" not in out.lower()
