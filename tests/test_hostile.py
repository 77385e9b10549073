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
