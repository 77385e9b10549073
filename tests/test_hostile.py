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


@pytest.mark.parametrize("command", ["train", "distill"])
@pytest.mark.parametrize("override, named", [
    ("data.decode=gpu", "data.decode=gpu"),  # no CUDA on the test machine (skipped where there is)
    ("train.tensorboard=true", "tensorboard"),  # tensorboard is an optional package
    ("model.pretrained=missing.safetensors", "missing.safetensors"),
])
def test_overwrite_with_a_config_that_cannot_run_keeps_the_trained_run(trained_run: Path, synth_root: Path,
                                                                       tmp_path: Path, capsys, command, override,
                                                                       named):
    """What only this machine or the model build can refuse is refused before --overwrite deletes."""
    import importlib.util

    import torch

    if override.startswith("data.decode") and torch.cuda.is_available():
        pytest.skip("CUDA is available: data.decode=gpu can run")
    if override.startswith("train.tensorboard") and importlib.util.find_spec("tensorboard") is not None:
        pytest.skip("tensorboard is installed")
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = snapshot(run)
    distill = {"distill": {"teachers": [str(trained_run)], "weighting": "uniform"}} if command == "distill" else {}
    cfg = tiny_config(synth_root, tmp_path / "cfg.yaml", run, **distill)
    code, _, err = run_cli(capsys, command, cfg, override, "--overwrite", "--no-progress")
    assert code == 1 and named in err and "Traceback" not in err
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


@pytest.mark.slow  # ~6 s
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


# ---------------------------------------------------------------------------------------------
# 9, 4, 8: value ranges checked at config load, naming the key, before anything is written
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("override, key", [
    ("train.batch_size=0", "train.batch_size"),
    ("train.eval_batch_size=-2", "train.eval_batch_size"),
    ("train.grad_accum=0", "train.grad_accum"),
    ("train.epochs=0", "train.epochs"),
    ("data.size=0", "data.size"),
    ("data.num_frames=0", "data.num_frames"),
    ("data.stride=0", "data.stride"),
    ("data.test_clips=0", "data.test_clips"),
    ("data.audio.hop_length=0", "data.audio.hop_length"),
    ("optim.lr=0", "optim.lr"),
    ("optim.lr=-1e-3", "optim.lr"),
    ("optim.lr=.nan", "optim.lr"),
    ("optim.lr=.inf", "optim.lr"),
    ("data.heldout_fraction=1.5", "data.heldout_fraction"),
    ("distill.temperature=0", "distill.temperature"),
    ("model.frame_step=0", "model.frame_step"),
])
def test_out_of_range_values_fail_at_load_naming_the_key(synth_root: Path, tmp_path: Path, capsys, override, key):
    run = tmp_path / "run"
    cfg = tiny_config(synth_root, tmp_path / "cfg.yaml", run)
    code, _, err = run_cli(capsys, "train", cfg, override, "--no-progress")
    assert code == 1 and f"'{key}'" in err, err
    assert not run.exists()  # nothing written


def test_frame_step_larger_than_the_clip_fails(synth_root: Path, tmp_path: Path, capsys):
    """A student with model.frame_step=8 on 4-frame views would see one frame."""
    run = tmp_path / "run"
    cfg = tiny_config(synth_root, tmp_path / "cfg.yaml", run)
    for step in (8, 4):
        code, _, err = run_cli(capsys, "train", cfg, f"model.frame_step={step}", "--no-progress")
        assert code == 1 and "model.frame_step" in err and "data.num_frames" in err
        assert not run.exists()


def test_evaluate_override_out_of_range_fails_cleanly(trained_run: Path, capsys):
    code, _, err = run_cli(capsys, "evaluate", trained_run, "data.test_clips=0", "--no-progress")
    assert code == 1 and "data.test_clips" in err


# ---------------------------------------------------------------------------------------------
# 5, 8: prepare options out of range
# ---------------------------------------------------------------------------------------------


def wav_file(path: Path, rate: int = 8000, seconds: float = 0.5) -> Path:
    import wave

    import numpy as np

    t = np.arange(int(rate * seconds)) / rate
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes())
    return path


def frame_folders(root: Path, videos: int = 1, frames: int = 3) -> Path:
    import cv2
    import numpy as np

    for v in range(videos):
        d = root / f"P01_{v + 1:02d}"
        d.mkdir(parents=True)
        for i in range(frames):
            img = np.full((16, 24, 3), 40 * i, dtype=np.uint8)
            cv2.imwrite(str(d / f"frame_{i + 1:010d}.jpg"), img)
    return root


@pytest.mark.parametrize("value", ["0", "-8000"])
def test_prepare_audio_refuses_a_sample_rate_below_1(tmp_path: Path, capsys, value):
    wav = wav_file(tmp_path / "P01_01.wav")
    out = tmp_path / "audio.h5"
    with pytest.raises(SystemExit) as e:
        cli.main(["prepare", "audio", str(wav), str(out), f"--sample-rate={value}"])
    assert e.value.code == 2 and "--sample-rate" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("option", ["--fps=0", "--fps=-25", "--fps=nan", "--workers=0"])
def test_prepare_frames_refuses_a_rate_or_count_below_range(tmp_path: Path, capsys, option):
    frames = frame_folders(tmp_path / "frames")
    out = tmp_path / "rgb.h5"
    with pytest.raises(SystemExit) as e:
        cli.main(["prepare", "frames", str(frames), str(out), option, "--quiet"])
    assert e.value.code == 2 and option.split("=")[0] in capsys.readouterr().err
    assert not out.exists()


def test_prepare_video_refuses_a_negative_short_side(tmp_path: Path, capsys):
    video = tiny_mp4(tmp_path / "P01_01.mp4")
    with pytest.raises(SystemExit) as e:
        cli.main(["prepare", "video", str(video), "--rgb", str(tmp_path / "rgb.h5"), "--no-audio",
                  "--short-side", "-1", "--quiet"])
    assert e.value.code == 2 and "--short-side" in capsys.readouterr().err
    assert not (tmp_path / "rgb.h5").exists()


def test_store_writers_refuse_a_rate_below_range(tmp_path: Path):
    import numpy as np

    from egodistill.data.stores import AudioWriter, RGBWriter

    import cv2

    jpeg = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    with pytest.raises(ValueError, match="fps"):
        with RGBWriter(tmp_path / "rgb.h5") as w:
            w.add_video("P01_01", [jpeg], fps=0.0)
    with pytest.raises(ValueError, match="sample.rate"):
        with AudioWriter(tmp_path / "audio.h5") as w:
            w.add_video("P01_01", np.zeros(100, np.float32), sample_rate=0)
    assert not (tmp_path / "rgb.h5").exists() and not (tmp_path / "audio.h5").exists()


# ---------------------------------------------------------------------------------------------
# 6. a store interrupted mid-write (kill -9) is resumed, its damaged entry redone
# ---------------------------------------------------------------------------------------------


def test_prepare_frames_resumes_past_a_damaged_entry(tmp_path: Path, capsys):
    """kill -9 while HDF5 wrote a video's object header leaves a link to an unreadable object;
    the rerun used to fail with AttributeError until the .tmp was deleted by hand."""
    import h5py

    from egodistill.data.stores import RGBStore, RGBWriter

    frames = frame_folders(tmp_path / "frames", videos=2, frames=3)
    out = tmp_path / "rgb.h5"
    blobs = {v: [p.read_bytes() for p in sorted((frames / v).iterdir())] for v in ("P01_01", "P01_02")}
    writer = RGBWriter(out)
    writer.add_video("P01_01", blobs["P01_01"], fps=60.0)
    writer.add_video("P01_02", blobs["P01_02"], fps=60.0)
    header = h5py.h5o.get_info(writer._file["P01_02"].id).addr
    writer.abort()  # as a killed run leaves it: out.h5.tmp, no out.h5
    with open(str(out) + ".tmp", "r+b") as f:  # the second video's object header, half-written
        f.seek(header)
        f.write(b"\xff" * 64)
    code, _, err = run_cli(capsys, "prepare", "frames", frames, out, "--quiet")
    assert code == 0, err
    store = RGBStore(out)
    assert store.video_ids() == ["P01_01", "P01_02"]
    for v in ("P01_01", "P01_02"):
        assert store.read_frames(v, [1, 2, 3]) == blobs[v]
    assert not Path(str(out) + ".tmp").exists()


# ---------------------------------------------------------------------------------------------
# 7. a full disk stops `prepare` cleanly before a video is written (h5py segfaulted, rc 139)
# ---------------------------------------------------------------------------------------------


def fake_disk(monkeypatch, free) -> None:
    """Make shutil.disk_usage report `free()` bytes free (a callable: the disk may fill up)."""
    import collections

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 10**12 - free(), free()))


def test_prepare_frames_stops_cleanly_when_the_disk_fills(tmp_path: Path, capsys, monkeypatch):
    """The disk fills once the run has written one video: the run stops before the next one with
    a message naming the folder, the space needed and the space free; the previous store is
    unchanged and a rerun with room resumes where the run stopped."""
    from egodistill.data.stores import RGBStore, RGBWriter

    frames = frame_folders(tmp_path / "frames", videos=1, frames=3)
    out = tmp_path / "disk" / "rgb.h5"
    assert cli.main(["prepare", "frames", str(frames), str(out), "--quiet"]) == 0
    before = out.read_bytes()
    shutil.rmtree(frames)
    frame_folders(tmp_path / "frames", videos=3, frames=3)
    written: list[str] = []
    add_video = RGBWriter.add_video
    monkeypatch.setattr(RGBWriter, "add_video", lambda self, vid, *a, **k: (add_video(self, vid, *a, **k),
                                                                            written.append(vid)))
    fake_disk(monkeypatch, lambda: 10**10 if not written else 2000)
    code, _, err = run_cli(capsys, "prepare", "frames", frames, out, "--quiet")
    assert code == 1 and written == ["P01_02"], (written, err)
    assert str(out.parent) in err and "P01_03" in err and "needs" in err and "free" in err, err
    assert len(err.strip().splitlines()) == 1
    assert out.read_bytes() == before
    monkeypatch.undo()
    code, out_text, err = run_cli(capsys, "prepare", "frames", frames, out, "--quiet")
    assert code == 0 and "1 videos (2 skipped)" in out_text, out_text
    assert RGBStore(out).video_ids() == ["P01_01", "P01_02", "P01_03"]


def test_prepare_refuses_to_copy_a_store_to_resume_without_room(tmp_path: Path, capsys, monkeypatch):
    """Adding to an existing store starts from a copy of it: no room for the copy, no copy."""
    frames = frame_folders(tmp_path / "frames", videos=1, frames=3)
    out = tmp_path / "rgb.h5"
    assert cli.main(["prepare", "frames", str(frames), str(out), "--quiet"]) == 0
    before = out.read_bytes()
    frame_folders(tmp_path / "more", videos=2, frames=3)
    from egodistill.data.prepare.common import _RESERVE

    fake_disk(monkeypatch, lambda: _RESERVE + len(before) // 2)  # past the reserve, but not room for the copy
    code, _, err = run_cli(capsys, "prepare", "frames", tmp_path / "more", out, "--quiet")
    assert code == 1 and str(tmp_path) in err and "free" in err, err
    assert out.read_bytes() == before and not Path(str(out) + ".tmp").exists()


def test_space_check_adds_up_the_stores_on_one_disk(tmp_path: Path, monkeypatch):
    """`prepare video` writes rgb.h5 and audio.h5: on one disk both payloads must fit at once."""
    from egodistill.data.prepare.common import SpaceCheck

    mb = 10**6
    fake_disk(monkeypatch, lambda: 30 * mb)
    space = SpaceCheck(tmp_path / "rgb.h5", tmp_path / "audio.h5")
    space.check("P01_01", (5 * mb, 100), (5 * mb, 1))  # each store alone would fit twice
    with pytest.raises(OSError, match=rf"in {tmp_path} for video P01_02 .*needs ~3\d\.\d MB, 30\.0 MB free"):
        space.check("P01_02", (8 * mb, 100), (8 * mb, 1))  # 16.8 MB a store, 33.6 MB both


def hand_object_json(path: Path) -> Path:
    path.write_text(json.dumps({"P01_01": {"num_frames": 2, "frames": {
        "1": {"hands": [{"box": [0.1, 0.2, 0.3, 0.4], "score": 0.9, "side": "left", "state": 3}], "objects": []}}}}))
    return path


@pytest.mark.parametrize("tool", ["frames", "flow-frames", "video", "audio", "flow", "layout"])
def test_every_prepare_tool_checks_the_disk_before_writing(synth_root: Path, tmp_path: Path, capsys, monkeypatch,
                                                           tool):
    """One check, before each video, in every tool that writes a store: past the fixed reserve
    but short of the video's payload, the tool stops at the video, naming it; no store is finished."""
    from egodistill.data.prepare.common import _RESERVE

    disk = tmp_path / "disk"
    if tool == "frames":
        argv = [frame_folders(tmp_path / "frames"), disk / "rgb.h5"]
    elif tool == "flow-frames":
        flow = tmp_path / "flow"
        frame_folders(flow / "u")
        frame_folders(flow / "v")
        argv = [flow, disk / "flow.h5"]
    elif tool == "video":
        argv = [tiny_mp4(tmp_path / "P01_01.mp4"), "--rgb", disk / "rgb.h5", "--audio", disk / "audio.h5",
                "--allow-silent"]
    elif tool == "audio":
        argv = [wav_file(tmp_path / "P01_01.wav"), disk / "audio.h5"]
    elif tool == "flow":
        argv = [synth_root / "rgb.h5", disk / "flow.h5", "--videos", "P01_01"]
    else:
        argv = [hand_object_json(tmp_path / "det.json"), disk / "layout.h5", "--format", "hand_object"]
    stores = 2 if tool == "video" else 1  # rgb.h5 and audio.h5: a reserve each
    fake_disk(monkeypatch, lambda: stores * _RESERVE + 10)
    code, _, err = run_cli(capsys, "prepare", tool, *argv, "--quiet")
    assert code == 1 and str(disk) in err and "for video" in err and "needs" in err and "free" in err, err
    assert not disk.exists() or not any(p.suffix == ".h5" for p in disk.iterdir())


# ---------------------------------------------------------------------------------------------
# 8. a read-only or full output location: one line naming the path, nothing half-written
# ---------------------------------------------------------------------------------------------


def unwritable(monkeypatch, folder: Path, error: int) -> None:
    """Make writing under `folder` fail in this process as a read-only or a full file system does;
    the tests run as root, whom chmod does not stop.

    EACCES (read-only): no file or folder can be made: open() for writing, os.open, os.mkdir
    (Path.mkdir, os.makedirs) and h5py.File refuse, os.access denies W_OK. ENOSPC (full): folders
    and files are made, as on a real full disk, but the first write into one fails: open()
    returns a file whose write() raises, an HDF5 file is created and creating a dataset in it
    raises; os.open refuses. So a writer that does not clean up leaves its empty or partial file
    behind, which `leftovers` finds."""
    import builtins
    import errno
    import io
    import os

    import h5py

    root = os.path.abspath(folder)
    reason = os.strerror(error)

    def refuse(path) -> None:
        try:
            target = os.path.abspath(os.fspath(path))
        except TypeError:  # a file descriptor
            return
        if target == root or target.startswith(root + os.sep):
            raise OSError(error, reason, target) if error != errno.EACCES else PermissionError(error, reason, target)

    real_open, real_os_open, real_mkdir, real_access = builtins.open, os.open, os.mkdir, os.access

    class FullFile:
        """A file opened for writing on a full disk: it exists, and every write fails."""

        def __init__(self, f, path):
            self._f, self._path = f, path

        def write(self, data):
            raise OSError(errno.ENOSPC, reason, self._path)

        writelines = write

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

        def __iter__(self):
            return iter(self._f)

    def open_(file, mode="r", *args, **kwargs):
        if not any(c in mode for c in "wax+"):
            return real_open(file, mode, *args, **kwargs)
        if error == errno.EACCES:
            refuse(file)
            return real_open(file, mode, *args, **kwargs)
        f = real_open(file, mode, *args, **kwargs)
        try:
            refuse(file)
        except OSError as e:
            return FullFile(f, e.filename)
        return f

    def os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        if error == errno.EACCES:
            refuse(path)
        return real_mkdir(path, *args, **kwargs)

    class File(h5py.File):
        def __init__(self, name, mode="r", *args, **kwargs):
            self._full = False
            if mode != "r":
                if error == errno.EACCES:
                    refuse(name)
                else:
                    try:
                        refuse(name)
                    except OSError:
                        self._full = True
            super().__init__(name, mode, *args, **kwargs)

        def create_dataset(self, name, *args, **kwargs):
            if self._full:
                raise OSError(errno.ENOSPC, reason, self.filename)
            return super().create_dataset(name, *args, **kwargs)

        def __setitem__(self, name, value):
            if self._full:
                raise OSError(errno.ENOSPC, reason, self.filename)
            super().__setitem__(name, value)

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and error == errno.EACCES:
            try:
                refuse(path)
            except OSError:
                return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)
    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(h5py, "File", File)


def leftovers(folder: Path) -> list[str]:
    """Files (and .tmp folders) under `folder`: what a failed write left behind."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.name.endswith(".tmp"))


ERRORS = pytest.mark.parametrize("error", ["EACCES", "ENOSPC"])


@ERRORS
@pytest.mark.parametrize("where", ["rgb.h5", "new/rgb.h5"])
def test_prepare_to_an_unwritable_location_is_one_line(tmp_path: Path, capsys, monkeypatch, error, where):
    import errno

    frames = frame_folders(tmp_path / "frames")
    locked = tmp_path / "locked"
    locked.mkdir()
    unwritable(monkeypatch, locked, getattr(errno, error))
    code, _, err = run_cli(capsys, "prepare", "frames", frames, locked / where, "--quiet")
    assert code == 1 and str(locked) in err and len(err.strip().splitlines()) == 1, err
    if error == "EACCES":
        assert leftovers(locked) == []
    else:  # the store writer keeps its partial file for the same command to resume, and says so
        assert leftovers(locked) == [where + ".tmp"] and "run the same command again to resume" in err, err


@ERRORS
def test_synth_to_an_unwritable_location_is_one_line(tmp_path: Path, capsys, monkeypatch, error):
    import errno

    locked = tmp_path / "locked"
    locked.mkdir()
    unwritable(monkeypatch, locked, getattr(errno, error))
    code, _, err = run_cli(capsys, "synth", locked / "data", "--tiny", "--quiet")
    assert code == 1 and str(locked) in err and len(err.strip().splitlines()) == 1, err
    assert leftovers(locked) == []


@ERRORS
def test_train_to_an_unwritable_location_is_one_line(synth_root: Path, tmp_path: Path, capsys, monkeypatch, error):
    import errno

    locked = tmp_path / "locked"
    locked.mkdir()
    cfg = tiny_config(synth_root, tmp_path / "cfg.yaml", locked / "run", train={"max_steps": 1})
    unwritable(monkeypatch, locked, getattr(errno, error))
    code, _, err = run_cli(capsys, "train", cfg, "--no-progress")
    assert code == 1 and str(locked) in err and len(err.strip().splitlines()) == 1, err
    assert leftovers(locked) == []


@ERRORS
def test_export_epic_to_an_unwritable_location(trained_run: Path, tmp_path: Path, capsys, monkeypatch, error):
    """Read-only: refused before evaluating; full: the evaluation's own files are written, the
    submission is not, and no half-written .tmp stays."""
    import errno

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    locked = tmp_path / "locked"
    locked.mkdir()
    unwritable(monkeypatch, locked, getattr(errno, error))
    code, _, err = run_cli(capsys, "evaluate", run, "--no-progress", "--no-plots", "--export-epic",
                           locked / "submission.json")
    assert code == 1 and str(locked) in err and len(err.strip().splitlines()) == 1, err
    assert (run / "predictions").exists() == (error == "ENOSPC")
    assert leftovers(locked) == []


def test_a_truncated_store_is_named(trained_run: Path, data_copy: Path, tmp_path: Path, capsys):
    """An rgb.h5 cut off mid-copy: train and evaluate name the store, write nothing."""
    store = data_copy / "rgb.h5"
    store.write_bytes(store.read_bytes()[: store.stat().st_size // 2])
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = snapshot(run)
    code, _, err = run_cli(capsys, "evaluate", run, f"data.root={data_copy}", "--no-progress", "--no-plots")
    assert code == 1 and str(store) in err and len(err.strip().splitlines()) == 1, err
    assert snapshot(run) == before
    cfg = tiny_config(data_copy, tmp_path / "cfg.yaml", tmp_path / "new", train={"max_steps": 1})
    code, _, err = run_cli(capsys, "train", cfg, "--no-progress")
    assert code == 1 and str(store) in err, err
    assert not (tmp_path / "new").exists()


def test_train_run_dir_that_is_a_file_is_refused(synth_root: Path, tmp_path: Path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    cfg = tiny_config(synth_root, tmp_path / "cfg.yaml", notes, train={"max_steps": 1})
    for extra in ([], ["--overwrite"]):
        code, _, err = run_cli(capsys, "train", cfg, "--no-progress", *extra)
        assert code == 1 and str(notes) in err, err
        assert notes.read_text() == "keep me"


def test_synth_out_that_is_a_file_is_refused(tmp_path: Path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    for extra in ([], ["--force"]):
        code, _, err = run_cli(capsys, "synth", notes, "--tiny", "--quiet", *extra)
        assert code == 1 and str(notes) in err, err
        assert notes.read_text() == "keep me" and not list(tmp_path.glob("notes.txt.*"))


def test_synth_force_deletes_only_a_synth_dataset(synth_root: Path, tmp_path: Path, capsys):
    """`synth OUT --force` used to delete any folder OUT; now only one holding a synth dataset's
    outputs and nothing else (anything more: one line naming the folder, nothing deleted)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "data.yaml").write_text("mine")
    (photos / "holiday.jpg").write_bytes(b"not a dataset")
    dataset = tmp_path / "dataset"
    shutil.copytree(synth_root, dataset)
    (dataset / "annotations" / "notes.txt").write_text("mine too")  # one extra file, deep down
    for folder in (photos, dataset):
        before = snapshot(folder)
        code, _, err = run_cli(capsys, "synth", folder, "--tiny", "--quiet", "--force")
        assert code == 1 and str(folder) in err and len(err.strip().splitlines()) == 1, err
        assert snapshot(folder) == before and not list(tmp_path.glob(f"{folder.name}.*"))


def test_synth_force_replaces_a_synth_dataset_only_once_the_new_one_is_built(synth_root: Path, tmp_path: Path,
                                                                             capsys, monkeypatch):
    import importlib

    gen = importlib.import_module("egodistill.synth.generate")  # the package exports a function of that name

    out = tmp_path / "data"
    shutil.copytree(synth_root, out)
    before = snapshot(out)

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(out) + ".tmp/rgb.h5")

    with monkeypatch.context() as m:
        m.setattr(gen, "_write_stores", full)
        code, _, err = run_cli(capsys, "synth", out, "--tiny", "--quiet", "--force", "--seed", "1")
    assert code == 1 and str(out) in err and len(err.strip().splitlines()) == 1, err
    assert snapshot(out) == before  # the old dataset stays
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no data.tmp, nothing else
    code, _, err = run_cli(capsys, "synth", out, "--tiny", "--quiet", "--force", "--seed", "1")
    assert code == 0, err
    assert json.loads((out / "synth.json").read_text())["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_synth_deletes_only_an_interrupted_build_in_out_tmp(tmp_path: Path, capsys):
    """OUT.tmp is where the dataset is built: a leftover of a killed build is cleared, anything
    else found there is the user's and is kept (one line naming it)."""
    mine = tmp_path / "data.tmp"
    mine.mkdir()
    (mine / "thesis.tex").write_text("keep me")
    code, _, err = run_cli(capsys, "synth", tmp_path / "data", "--tiny", "--quiet")
    assert code == 1 and str(mine) in err and len(err.strip().splitlines()) == 1, err
    assert (mine / "thesis.tex").read_text() == "keep me" and not (tmp_path / "data").exists()
    shutil.rmtree(mine)
    (mine / "_work1234" / "frames").mkdir(parents=True)  # what kill -9 mid-build leaves
    (mine / "annotations").mkdir()
    (mine / "annotations" / "EPIC_100_train.csv.tmp").write_text("half")
    (mine / "rgb.h5.tmp").write_bytes(b"half")
    code, _, err = run_cli(capsys, "synth", tmp_path / "data", "--tiny", "--quiet")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


# ---------------------------------------------------------------------------------------------
# 10. usability: overrides after flags, predict on a folder, broken run files named
# ---------------------------------------------------------------------------------------------


def test_overrides_after_a_flag_are_accepted(synth_root: Path, tmp_path: Path, capsys):
    run = tmp_path / "run"
    cfg = tiny_config(synth_root, tmp_path / "cfg.yaml", run)
    code, _, err = run_cli(capsys, "train", cfg, "--no-progress", "train.batch_size=0")
    assert code == 1 and "train.batch_size" in err  # the override was read
    code, _, err = run_cli(capsys, "train", cfg, "--no-progress", "train.max_steps=1", "--overwrite", "name=late")
    assert code == 0, err
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["max_steps"] == 1 and saved["name"] == "late"


def test_a_stray_argument_after_a_flag_is_still_refused(synth_root: Path, tmp_path: Path, capsys):
    cfg = tiny_config(synth_root, tmp_path / "cfg.yaml", tmp_path / "run")
    with pytest.raises(SystemExit) as e:
        cli.main(["train", str(cfg), "--no-progress", "stray"])
    assert e.value.code == 2 and "stray" in capsys.readouterr().err


def test_predict_on_a_folder_predicts_its_videos(trained_run: Path, tmp_path: Path, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    tiny_mp4(folder / "a.mp4")
    (folder / "notes.txt").write_text("not a video")
    code, out, err = run_cli(capsys, "predict", folder, "--run", trained_run, "--json")
    assert code == 0, err
    assert [r["video"] for r in strict_json(out)] == [str(folder / "a.mp4")]
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli(capsys, "predict", empty, "--run", trained_run)
    assert code == 1 and "folder" in err and str(empty) in err


@pytest.mark.parametrize("name", ["info.json", "config.yaml"])
def test_broken_run_file_is_named(trained_run: Path, tmp_path: Path, capsys, name):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / name).write_text('{"name": "epic100", "heads": ')  # cut off mid-write
    code, _, err = run_cli(capsys, "evaluate", run, "--no-progress", "--no-plots")
    assert code == 1 and str(run / name) in err
    video = tiny_mp4(tmp_path / "clip.mp4")
    code, _, err = run_cli(capsys, "predict", video, "--run", run)
    assert code == 1 and str(run / name) in err


@pytest.mark.parametrize("name", ["last/state.json", "heldout.json"])
def test_broken_state_file_is_named_on_resume(trained_run: Path, synth_root: Path, tmp_path: Path, capsys, name):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / name).write_bytes(b"\x00\x00\x00")
    cfg = tiny_config(synth_root, tmp_path / "cfg.yaml", run)
    code, _, err = run_cli(capsys, "train", cfg, "--resume", "--no-progress")
    assert code == 1 and str(run / name) in err


# ---------------------------------------------------------------------------------------------
# 8. files that are not what they should be: clean errors naming them, nothing left half-written
# ---------------------------------------------------------------------------------------------


def test_prepare_output_that_is_a_folder_is_refused(tmp_path: Path, capsys):
    frames = frame_folders(tmp_path / "frames")
    out = tmp_path / "stores"
    out.mkdir()
    code, _, err = run_cli(capsys, "prepare", "frames", frames, out, "--quiet")
    assert code == 1 and str(out) in err and "folder" in err
    assert list(out.iterdir()) == [] and not list(tmp_path.glob("stores.*"))


def test_prepare_output_that_is_a_text_file_is_kept(tmp_path: Path, capsys):
    frames = frame_folders(tmp_path / "frames")
    out = tmp_path / "notes.txt"
    out.write_text("my notes")
    code, _, err = run_cli(capsys, "prepare", "frames", frames, out, "--quiet")
    assert code == 1 and str(out) in err and "HDF5" in err
    assert out.read_text() == "my notes" and not Path(str(out) + ".tmp").exists()


def test_export_epic_to_a_folder_fails_before_evaluating(trained_run: Path, tmp_path: Path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    target = tmp_path / "exports"
    target.mkdir()
    code, _, err = run_cli(capsys, "evaluate", run, "--no-progress", "--no-plots", "--export-epic", target)
    assert code == 1 and str(target) in err and "folder" in err
    assert not (run / "predictions").exists()  # refused before evaluating
    assert not list(tmp_path.glob("exports.*"))


def test_export_epic_under_a_file_fails_before_evaluating(trained_run: Path, tmp_path: Path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    blocker = tmp_path / "report.txt"
    blocker.write_text("x")
    code, _, err = run_cli(capsys, "evaluate", run, "--no-progress", "--no-plots", "--export-epic",
                           blocker / "submission.json")
    assert code == 1 and str(blocker) in err
    assert not (run / "predictions").exists() and blocker.read_text() == "x"


@pytest.mark.parametrize("kind", ["csv", "truncated"])
def test_teacher_cache_path_that_is_not_a_cache_is_named_and_kept(trained_run: Path, synth_root: Path,
                                                                 tmp_path: Path, capsys, kind):
    if kind == "csv":
        cache = tmp_path / "train.csv"
        shutil.copy(synth_root / "annotations" / "EPIC_100_train.csv", cache)
    else:
        import h5py

        cache = tmp_path / "cache.h5"
        with h5py.File(cache, "w") as f:
            f.attrs["format"] = "egodistill-teacher-cache"
            f.create_dataset("logits", data=list(range(10000)))
        cache.write_bytes(cache.read_bytes()[:1500])
    before = cache.read_bytes()
    run = tmp_path / "student"
    cfg = tiny_config(synth_root, tmp_path / "cfg.yaml", run,
                      distill={"teachers": [str(trained_run)], "weighting": "uniform",
                               "cache": {"views": 1, "path": str(cache)}})
    code, _, err = run_cli(capsys, "distill", cfg, "--no-progress")
    assert code == 1 and str(cache) in err and "teacher cache" in err
    assert cache.read_bytes() == before


def damage_heap_of(store: Path, video: str, frame_index: int) -> None:
    """Overwrite the signature of the HDF5 global heap collection that holds one frame's bytes."""
    import h5py

    with h5py.File(store, "r") as f:
        blob = f[video][frame_index].tobytes()
    raw = bytearray(store.read_bytes())
    heap = raw.rfind(b"GCOL", 0, raw.find(blob))
    assert heap > 0
    raw[heap:heap + 4] = b"XXXX"
    store.write_bytes(bytes(raw))


@pytest.mark.parametrize("workers", [0, 1])
def test_damaged_store_bytes_name_store_video_and_frame(trained_run: Path, data_copy: Path, tmp_path: Path, capsys,
                                                        workers):
    """Bytes of the RGB store damaged on disk (the heap holding a video's last JPEGs): evaluation
    names the store, the video and the frame, also when a DataLoader worker read them."""
    import h5py

    store = data_copy / "rgb.h5"
    with h5py.File(store, "r") as f:
        video = sorted(f)[-1]  # a validation video of the tiny dataset (unseen participant)
    damage_heap_of(store, video, -1)
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    code, _, err = run_cli(capsys, "evaluate", run, f"data.root={data_copy}", f"train.workers={workers}",
                           "--no-progress", "--no-plots")
    assert code == 1 and str(store) in err and repr(video) in err and "frame" in err, err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.slow  # ~6 s
def test_damaged_store_metadata_names_the_store(trained_run: Path, data_copy: Path, tmp_path: Path, capsys):
    import h5py

    store = data_copy / "rgb.h5"
    with h5py.File(store, "r") as f:
        video = sorted(f)[0]
    damage_heap_of(store, video, 0)  # the first heap also holds the root's format attribute
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    code, _, err = run_cli(capsys, "evaluate", run, f"data.root={data_copy}", "--no-progress", "--no-plots")
    assert code == 1 and str(store) in err and "damaged" in err, err


# ---------------------------------------------------------------------------------------------
# 3. a truncated video is not packed in silence
# ---------------------------------------------------------------------------------------------


def truncated_mp4(folder: Path, name: str = "P01_01.mp4") -> tuple[Path, Path]:
    """Return (a whole faststart mp4 of 60 frames at 25 fps, its first half as `folder/name`).
    The index comes first, so the half file opens and announces 60 frames; 4 of them decode."""
    from media import write_video

    full = write_video(folder / "full.mp4", frames=60, fps=25, faststart=True)
    half = folder / name
    half.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return full, half


def test_prepare_video_refuses_a_truncated_file(tmp_path: Path, capsys):
    """A faststart mp4 cut in half packed 4 of 60 frames (exit 0, nothing said)."""
    _, half = truncated_mp4(tmp_path)
    rgb = tmp_path / "rgb.h5"
    code, _, err = run_cli(capsys, "prepare", "video", half, "--rgb", rgb, "--no-audio", "--quiet")
    assert code == 1 and str(half) in err, err
    assert "of 60 frames" in err and "stopped at 0." in err and "--allow-truncated" in err, err
    assert len(err.strip().splitlines()) == 1 and not rgb.exists()


def test_prepare_video_allow_truncated_packs_what_decodes_and_warns(tmp_path: Path, capsys):
    from egodistill.data.stores import RGBStore

    full, half = truncated_mp4(tmp_path)
    good = tmp_path / "P01_00.mp4"
    shutil.copy(full, good)
    rgb = tmp_path / "rgb.h5"
    code, _, err = run_cli(capsys, "prepare", "video", good, half, "--rgb", rgb, "--no-audio", "--quiet")
    assert code == 1 and not rgb.exists()
    code, out, err = run_cli(capsys, "prepare", "video", good, half, "--rgb", rgb, "--no-audio", "--quiet",
                             "--allow-truncated")
    assert code == 0 and "(1 skipped)" in out, out  # the whole video packed by the failed run is kept
    assert "warning" in err and "P01_01.mp4" in err and "of 60 frames" in err and "stopped at 0." in err, err
    store = RGBStore(rgb)
    assert store.num_frames("P01_00") == 60 and 0 < store.num_frames("P01_01") < 60


def test_prepare_video_packs_a_whole_file_without_a_word(tmp_path: Path, capsys):
    full, _ = truncated_mp4(tmp_path)
    code, _, err = run_cli(capsys, "prepare", "video", full, "--rgb", tmp_path / "rgb.h5", "--no-audio", "--quiet")
    assert code == 0 and "warning" not in err, err


def test_a_pickle_renamed_safetensors_as_pretrained_is_named(synth_root: Path, tmp_path: Path, capsys):
    import torch

    fake = tmp_path / "weights.safetensors"
    torch.save({"backbone.patch_embed.proj.weight": torch.zeros(1)}, fake)
    cfg = tiny_config(synth_root, tmp_path / "cfg.yaml", tmp_path / "run")
    code, _, err = run_cli(capsys, "train", cfg, f"model.pretrained={fake}", "--no-progress")
    assert code == 1 and str(fake) in err and "not a readable safetensors file" in err
    assert not (tmp_path / "run").exists()


def test_dead_and_test_only_code_is_gone():
    """The review's list: helpers no caller used (`is_distill_run`, `open_writer`,
    `inputs.batch_size`) and writer aliases kept for a caller that is gone."""
    from egodistill.data import stores
    from egodistill.distill import teachers
    from egodistill.engine import inputs

    assert not hasattr(teachers, "is_distill_run") and not hasattr(inputs, "batch_size")
    gone = ("open_writer", "RGBStoreWriter", "FlowStoreWriter", "AudioStoreWriter", "LayoutStoreWriter")
    assert not any(hasattr(stores, name) for name in gone)
