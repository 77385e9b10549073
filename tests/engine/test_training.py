"""Training, resuming, evaluating and predicting end to end on the tiny synthetic dataset.

Covers: the run folder, refusing an existing one, a SIGKILL mid-epoch then --resume giving
bit-identical results, a NaN loss stopping with the last good checkpoint intact, evaluation
equal to averaging a model's logits over the test views by hand, a model/dataset head mismatch
explained, `predict` on a video file, and two gloo processes evaluating like one.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from egodistill import cli
from egodistill.config import load_config

REPO = Path(__file__).resolve().parents[2]

TINY = {
    "model": {"arch": "swin_nano", "drop_path": 0.1},
    "data": {"num_frames": 4, "stride": 1, "size": 32, "test_clips": 2, "test_crops": 1, "heldout_fraction": 0.5},
    "optim": {"lr": 1e-3, "warmup_epochs": 0.5},
    "train": {"epochs": 2, "batch_size": 1, "grad_accum": 2, "eval_batch_size": 4, "workers": 0, "log_every": 1},
}


def write_config(synth_root: Path, path: Path, run_dir: Path, **sections) -> Path:
    """Write a tiny training config over the synthetic dataset; `sections` update TINY's."""
    with open(synth_root / "data.yaml") as f:
        data = yaml.safe_load(f)["data"]
    tree = json.loads(json.dumps(TINY))
    tree["data"].update(data)
    for name, values in sections.items():
        tree.setdefault(name, {}).update(values)
    tree["run_dir"] = str(run_dir)
    path.write_text(yaml.safe_dump(tree))
    return path


def egodistill(*args: str, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "egodistill", *args], cwd=REPO, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def eval_records(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.jsonl") as f:
        return [r for r in map(json.loads, f) if r["kind"] == "eval"]


@pytest.fixture(scope="module")
def trained_run(synth_root: Path, tmp_path_factory) -> Path:
    """A tiny RGB run trained in this process (2 epochs)."""
    from egodistill.pipelines.train import run_train

    tmp = tmp_path_factory.mktemp("run")
    cfg = load_config(write_config(synth_root, tmp / "cfg.yaml", tmp / "rgb"))
    summary = run_train(cfg, progress=False)
    assert summary["epoch"] in (1, 2) and "action_top1" in summary
    return tmp / "rgb"


def test_run_folder(trained_run: Path, synth_root: Path):
    for name in ("config.yaml", "info.json", "heldout.json", "metrics.jsonl", "model.safetensors",
                 "last/model.safetensors", "last/training_state.pt", "last/state.json", "plots/training.png"):
        assert (trained_run / name).is_file(), name
    cfg = load_config(trained_run / "config.yaml")
    assert cfg.model.heads == {"verb": 4, "noun": 4}  # resolved from the dataset
    held = json.loads((trained_run / "heldout.json").read_text())
    from egodistill.data.annotations import build_reader

    train = build_reader(cfg).samples("train")
    held_videos = {s.video_id for s in train if s.id in set(held["ids"])}
    assert held_videos == set(held["videos"]) and len(held_videos) == 1
    assert all(s.id in held["ids"] for s in train if s.video_id in held_videos)  # whole videos
    records = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if r["kind"] == "train"]
    # 3 training samples, batch 1, accumulation 2 -> 2 optimiser steps per epoch
    assert [r["step"] for r in train_records] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) and r["clips_per_s"] > 0 for r in train_records)
    # warm-up of one step (0.5 epochs), then linear decay over the other three
    assert [r["lr"] for r in train_records] == pytest.approx([1e-3, 1e-3, 2e-3 / 3, 1e-3 / 3])
    evals = eval_records(trained_run)
    assert [r["epoch"] for r in evals] == [1, 2]
    best = max(evals, key=lambda r: (r["selected"], -r["epoch"]))
    assert best["best"] and best["selected"] == best["action_top1"]
    state = json.loads((trained_run / "last" / "state.json").read_text())
    assert state["finished"] and state["step"] == 4 and state["best"]["epoch"] == best["epoch"]


def test_existing_run_folder_is_refused(trained_run: Path, synth_root: Path, tmp_path: Path, capsys):
    cfg = write_config(synth_root, tmp_path / "cfg.yaml", trained_run)
    assert cli.main(["train", str(cfg), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "--resume" in err and "--overwrite" in err
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "stale.txt").write_text("x")
    shutil.copy(trained_run / "config.yaml", fresh / "config.yaml")  # --overwrite deletes only a run folder
    cfg = write_config(synth_root, tmp_path / "cfg2.yaml", fresh, train={"epochs": 1, "max_steps": 1})
    assert cli.main(["train", str(cfg), "--overwrite", "--no-progress"]) == 0
    assert not (fresh / "stale.txt").exists() and (fresh / "model.safetensors").is_file()


KILL_AFTER_STEP_1 = """
import os, signal
from egodistill.pipelines.train import run_train
from egodistill.config import load_config

def kill_after_step_1(trainer):
    if trainer.state.step == 1 and not trainer.state.finished and trainer.main:
        os.kill(os.getpid(), signal.SIGKILL)

run_train(load_config({config!r}), progress=False, callbacks=[kill_after_step_1])
"""


@pytest.mark.slow
def test_kill_mid_epoch_then_resume_is_bit_identical(synth_root: Path, tmp_path: Path):
    extra = {"train": {"checkpoint_every": 1, "epochs": 2}}
    full = write_config(synth_root, tmp_path / "full.yaml", tmp_path / "full", **extra)
    crash = write_config(synth_root, tmp_path / "crash.yaml", tmp_path / "crash", **extra)
    r = egodistill("train", str(full), "--no-progress")
    assert r.returncode == 0, r.stderr
    # step 1 ends mid-epoch 1 (2 steps per epoch): a checkpoint callback kills the process right
    # after last/ is saved
    script = tmp_path / "crash.py"
    script.write_text(KILL_AFTER_STEP_1.format(config=str(crash)))
    r = subprocess.run([sys.executable, str(script)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == -signal.SIGKILL, r.stderr
    state = json.loads((tmp_path / "crash" / "last" / "state.json").read_text())
    assert (state["epoch"], state["batch"], state["step"], state["finished"]) == (0, 2, 1, False)
    assert not (tmp_path / "crash" / "model.safetensors").exists()  # no evaluation yet
    r = egodistill("train", str(crash), "--resume", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stdout
    strip = lambda recs: [{k: v for k, v in rec.items() if k != "clips_per_s"} for rec in recs]  # noqa: E731
    full_log = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    crash_log = [json.loads(x) for x in (tmp_path / "crash" / "metrics.jsonl").read_text().splitlines()]
    assert strip(crash_log) == strip(full_log)  # same losses, learning rates and held-out metrics
    for name in ("model.safetensors", "last/model.safetensors"):
        assert (tmp_path / "full" / name).read_bytes() == (tmp_path / "crash" / name).read_bytes(), name
    r = egodistill("train", str(crash), "--resume", "--no-progress")  # a finished run stays finished
    assert r.returncode == 0 and (tmp_path / "crash" / "model.safetensors").read_bytes() == \
        (tmp_path / "full" / "model.safetensors").read_bytes()


def test_nan_loss_stops_naming_the_step(synth_root: Path, tmp_path: Path):
    from egodistill.data.annotations import build_reader
    from egodistill.data.dataset import build_dataset
    from egodistill.engine.objectives import SupervisedObjective
    from egodistill.engine.trainer import NonFiniteLossError, fit
    from egodistill.models import build_model

    class NaNAfter(SupervisedObjective):
        def __init__(self, good_batches: int):
            super().__init__()
            self.calls, self.good = 0, good_batches

        def forward(self, logits, batch):
            loss, parts = super().forward(logits, batch)
            self.calls += 1
            return (loss * float("nan") if self.calls > self.good else loss), parts

    cfg = load_config(write_config(synth_root, tmp_path / "cfg.yaml", tmp_path / "nan",
                                   train={"checkpoint_every": 1, "log_every": 5, "grad_accum": 1, "epochs": 3}))
    reader = build_reader(cfg)
    samples = reader.samples("train")
    model = build_model(cfg.model, {"verb": 4, "noun": 4}, 3)
    train_set = build_dataset(cfg, "train", train=True, samples=samples[:3])
    # batches 1-3 are fine (steps 1-3, saved); batch 4 (step 4) is NaN
    saved = []  # (step, finished) each time last/ was written, seen by a checkpoint callback

    def record(trainer):
        saved.append((trainer.state.step, trainer.state.finished))
        assert (tmp_path / "nan" / "last" / "state.json").is_file()

    with pytest.raises(NonFiniteLossError, match=r"at optimiser step 4 .*last \(step 3\)"):
        fit(cfg, tmp_path / "nan", model, NaNAfter(3), train_set, None, reader.info(), progress=False,
            callbacks=[record])
    assert saved == [(1, False), (2, False), (3, False), (3, False)]  # step 3 again at the end of epoch 1
    state = json.loads((tmp_path / "nan" / "last" / "state.json").read_text())
    assert state["step"] == 3
    from safetensors.torch import load_file

    weights = load_file(str(tmp_path / "nan" / "last" / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_evaluate_averages_views_and_saves_everything(trained_run: Path, tmp_path: Path):
    from egodistill.pipelines.evaluate import run_evaluate
    from egodistill.data.annotations import build_reader
    from egodistill.data.dataset import build_dataset
    from egodistill.engine.checkpoint import load_run
    from egodistill.engine.evaluate import load_predictions
    from egodistill.engine.inputs import model_input
    from egodistill.engine.metrics import compute_metrics

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    metrics = run_evaluate(run, progress=False, export_epic=str(tmp_path / "sub.json"))
    logits, ids = load_predictions(run / "predictions" / "validation.safetensors")
    cfg, model, info = load_run(run)
    samples = build_reader(cfg).samples("validation")
    assert ids == [s.id for s in samples]  # dataset order, each sample once
    assert compute_metrics(logits, samples, info) == metrics
    assert json.loads((run / "predictions" / "validation_metrics.json").read_text()) == pytest.approx(metrics)
    # by hand: the model on each of the K=2 test views of sample 0, logits averaged
    dataset = build_dataset(cfg, "validation", train=False, samples=samples)
    item = dataset[0]
    assert item["rgb"].shape[0] == 2
    with torch.no_grad():
        per_view = model(model_input({"rgb": item["rgb"][None]}, cfg.model))
    for h in ("verb", "noun"):
        assert torch.allclose(logits[h][0], per_view[h].mean(0), atol=1e-5)
    for name in ("reliability_validation_verb.png", "confusion_validation_noun.png"):
        assert (run / "plots" / name).is_file()
    last = eval_records(run)[-1]
    assert last["split"] == "validation" and last["verb_top1"] == metrics["verb_top1"]
    sub = json.loads((tmp_path / "sub.json").read_text())
    assert set(sub["results"]) == set(ids)
    probs = logits["verb"][0].softmax(0)
    assert sub["results"][ids[0]]["verb"]["2"] == pytest.approx(float(probs[2]), rel=1e-5)


def test_head_mismatch_is_explained(trained_run: Path, synth_root: Path, tmp_path: Path):
    from egodistill.pipelines.evaluate import run_evaluate

    verbs = tmp_path / "verbs.csv"
    text = (synth_root / "annotations" / "EPIC_100_verb_classes.csv").read_text().rstrip("\n").splitlines()
    text.append(f'4,extra-verb,"[\'extra-verb\']",extra')
    verbs.write_text("\n".join(text) + "\n")
    with pytest.raises(ValueError, match=r"head 'verb': the model of run .* outputs 4 classes but dataset "
                                         r"epic100 has 5 verb classes"):
        run_evaluate(trained_run, overrides=[f"data.files.verb_classes={verbs}"], progress=False)


@pytest.mark.slow
def test_predict_video_file(trained_run: Path, tmp_path: Path):
    import av

    from egodistill.engine.checkpoint import load_run
    from egodistill.engine.inputs import model_input
    from egodistill.engine.predict import decode_frames, predict_videos, video_views

    paths = []
    for n, seed in ((12, 0), (20, 1)):
        path = tmp_path / f"clip{seed}.mp4"
        rng = np.random.default_rng(seed)
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = 48, 36, "yuv420p"
            for _ in range(n):
                frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (36, 48, 3), dtype=np.uint8), format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
        paths.append(path)
    cfg, model, info = load_run(trained_run)
    together = predict_videos(paths, cfg, model, info, k=4, batch_size=2)
    alone = [predict_videos([p], cfg, model, info, k=4, batch_size=1)[0] for p in paths]
    assert [r["frames"] for r in together] == [12, 20]
    for a, b in zip(together, alone):
        assert [x["name"] for x in a["verb"]] == [x["name"] for x in b["verb"]]
        assert [x["prob"] for x in a["verb"]] == pytest.approx([x["prob"] for x in b["verb"]], abs=1e-5)
    r = together[1]
    assert sum(x["prob"] for x in r["verb"]) == pytest.approx(1.0)  # all 4 verbs listed
    assert [x["prob"] for x in r["noun"]] == sorted((x["prob"] for x in r["noun"]), reverse=True)
    frames, fps = decode_frames(paths[1])
    assert len(frames) == 20 and fps == 25 and frames[0].shape == (36, 48, 3)
    with torch.no_grad():
        z = model(model_input({"rgb": video_views(frames, cfg)[None]}, cfg.model))
    top_verb = int(z["verb"].mean(0).argmax())
    assert r["verb"][0]["class"] == top_verb and r["verb"][0]["name"] == info.heads["verb"][top_verb]
    top_action = r["action"][0]
    assert top_action["prob"] == pytest.approx(r["verb"][0]["prob"] * r["noun"][0]["prob"])
    # the command line, JSON output
    out = egodistill("predict", str(paths[0]), "--run", str(trained_run), "--json", "--top", "2")
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    assert [x["name"] for x in printed[0]["verb"]] == [x["name"] for x in together[0]["verb"][:2]]
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    out = egodistill("predict", str(bad), "--run", str(trained_run))
    assert out.returncode == 1 and "bad.mp4: cannot be opened as a video" in out.stderr


@pytest.mark.slow
def test_two_processes_evaluate_like_one(trained_run: Path, tmp_path: Path):
    one, two = tmp_path / "one", tmp_path / "two"
    shutil.copytree(trained_run, one)
    shutil.copytree(trained_run, two)
    r = egodistill("evaluate", str(one), "--no-progress", "--no-plots")
    assert r.returncode == 0, r.stderr
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "egodistill", "evaluate", str(two), "--no-progress", "--no-plots"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    from egodistill.engine.evaluate import load_predictions

    m1 = json.loads((one / "predictions" / "validation_metrics.json").read_text())
    m2 = json.loads((two / "predictions" / "validation_metrics.json").read_text())
    assert m2["num_samples"] == m1["num_samples"] == 9  # every sample counted once (shards of 5 and 4)
    assert m2 == pytest.approx(m1, abs=1e-9)
    l1, ids1 = load_predictions(one / "predictions" / "validation.safetensors")
    l2, ids2 = load_predictions(two / "predictions" / "validation.safetensors")
    assert ids1 == ids2 and len(set(ids2)) == len(ids2)
    assert all(torch.allclose(l1[h], l2[h], atol=1e-5) for h in l1)


def fit_with_scripted_heldout(synth_root: Path, run_dir: Path, monkeypatch, scores: list[tuple[float, float]],
                              snapshots: list | None = None, **train) -> dict:
    """Train a tiny model for len(scores) epochs with the held-out evaluation replaced by
    `scores` ((action, verb) top-1 per epoch); return `fit`'s summary of the kept weights.
    `snapshots`, when given, receives a copy of the model's weights at each evaluation."""
    from egodistill.data.annotations import build_reader
    from egodistill.data.dataset import build_dataset
    from egodistill.engine import trainer as trainer_module
    from egodistill.engine.objectives import SupervisedObjective
    from egodistill.models import build_model

    scripted = iter(scores)

    def fake_evaluate(predictor, dataset, cfg, info, accelerator, **kw):
        action, verb = next(scripted)
        if snapshots is not None:
            snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        logits = {"verb": torch.zeros(2, 4), "noun": torch.zeros(2, 4)}
        return {"action_top1": action, "verb_top1": verb, "noun_top1": 30.0}, logits, None

    monkeypatch.setattr(trainer_module, "evaluate_dataset", fake_evaluate)
    cfg = load_config(write_config(synth_root, run_dir.parent / f"{run_dir.name}.yaml", run_dir,
                                   train={"epochs": len(scores), "grad_accum": 1, "max_steps": 0, **train}))
    reader = build_reader(cfg)
    samples = reader.samples("train")
    model = build_model(cfg.model, {"verb": 4, "noun": 4}, 3)
    train_set = build_dataset(cfg, "train", train=True, samples=samples[:2])
    heldout = build_dataset(cfg, "train", train=False, samples=samples[2:4])
    return trainer_module.fit(cfg, run_dir, model, SupervisedObjective(), train_set, heldout, reader.info(),
                              progress=False)


def test_selection_ties_go_to_the_better_mean_head_accuracy(synth_root: Path, tmp_path: Path, monkeypatch):
    """On a small held-out split action top-1 often ties; the tie goes to the epoch with the better
    mean top-1 of the heads, not to the earliest epoch that reached the score."""
    scores = [(18.0, 46.0), (18.0, 58.0), (18.0, 50.0), (16.0, 70.0)]
    best = fit_with_scripted_heldout(synth_root, tmp_path / "ties", monkeypatch, scores)
    assert best["epoch"] == 2 and best["verb_top1"] == 58.0


def test_keep_weights_last_keeps_the_final_epoch_whatever_it_scores(synth_root: Path, tmp_path: Path, monkeypatch):
    """train.keep_weights=last: model.safetensors holds the last epoch's weights (equal to last/'s),
    even when an earlier epoch scored better on the held-out split."""
    from safetensors.torch import load_file

    run = tmp_path / "last"
    epochs: list[dict[str, torch.Tensor]] = []
    kept = fit_with_scripted_heldout(synth_root, run, monkeypatch, [(10.0, 40.0), (30.0, 60.0), (12.0, 41.0)],
                                     snapshots=epochs, keep_weights="last")
    assert kept["epoch"] == 3 and kept["action_top1"] == 12.0
    weights, final = load_file(str(run / "model.safetensors")), load_file(str(run / "last" / "model.safetensors"))
    assert weights.keys() == final.keys() and all(torch.equal(weights[k], final[k]) for k in weights)
    same = lambda a, b: all(torch.equal(a[k], b[k]) for k in weights)  # noqa: E731
    assert same(weights, epochs[2]) and not same(weights, epochs[1])  # the third epoch's, not the better second's
