"""`egodistill calibrate RUN` and the runs it changes: the temperatures are fitted on the run's
held-out clips, and evaluate, predict and export divide the model's logits by them (and only for
the weights they were fitted for)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from egodistill import cli
from egodistill.config import load_config
from test_training import write_config

TEMPS = {"verb": 0.5, "noun": 2.0}


@pytest.fixture(scope="module")
def run(synth_root: Path, tmp_path_factory) -> Path:
    """A tiny RGB run (2 epochs) of this module's own: calibrating it changes what it reports."""
    from egodistill.pipelines.train import run_train

    tmp = tmp_path_factory.mktemp("calibrate")
    run_train(load_config(write_config(synth_root, tmp / "cfg.yaml", tmp / "rgb")), progress=False)
    return tmp / "rgb"


def with_temperatures(run_dir: Path, temps: dict[str, float]) -> None:
    """Write the run's calibration.json with these temperatures (for its current weights)."""
    from egodistill.atomic import write_json
    from egodistill.engine.calibration import MODEL_CALIBRATION_FILE, model_calibration_record, weights_digest

    z, y = torch.randn(8, 3), torch.randint(0, 3, (8,))
    record = model_calibration_record({h: z for h in temps}, {h: y for h in temps},
                                      weights_digest(run_dir / "model.safetensors"), 8)
    record["temperature"] = dict(temps)
    write_json(run_dir / MODEL_CALIBRATION_FILE, record)


def test_calibrate_fits_every_head_on_the_held_out_clips(run: Path, capsys):
    from egodistill.engine.heldout import read_heldout_ids

    assert cli.main(["calibrate", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    record = json.loads((run / "calibration.json").read_text())
    assert set(record["temperature"]) == {"verb", "noun"}
    assert record["clips"] == len(read_heldout_ids(run)) > 0
    for h in ("verb", "noun"):
        assert f"calibration [{h}]: temperature" in out
        before, after = record["nll"][h]
        assert after <= before + 1e-9  # the NLL is unimodal in log T: its minimum is no worse than T = 1


def test_evaluate_predict_and_export_use_the_temperatures(run: Path, tmp_path: Path):
    from egodistill.engine.evaluate import load_predictions
    from egodistill.engine.export import export_run, load_exported, sidecar_path
    from egodistill.engine.checkpoint import load_run
    from egodistill.engine.predict import TorchPredictor, load_predictor
    from egodistill.pipelines.evaluate import run_evaluate

    with_temperatures(run, TEMPS)
    raw = run_evaluate(run, plots=False, progress=False, calibrated=False)
    raw_logits, _ = load_predictions(run / "predictions" / "validation_uncalibrated.safetensors")
    scaled = run_evaluate(run, plots=False, progress=False)
    scaled_logits, _ = load_predictions(run / "predictions" / "validation.safetensors")
    for h, t in TEMPS.items():
        torch.testing.assert_close(scaled_logits[h], raw_logits[h] / t, rtol=1e-4, atol=1e-5)
        assert scaled[f"{h}_top1"] == raw[f"{h}_top1"]  # predictions never change
        assert scaled[f"temperature_{h}"] == t
    assert scaled["action_ece_uncalibrated"] == pytest.approx(raw["action_ece"], abs=1e-4)
    assert scaled["action_ece"] != pytest.approx(raw["action_ece"], abs=1e-3)
    assert "temperature_verb" not in raw

    clips = torch.randint(0, 256, (2, 1, 4, 3, 32, 32), dtype=torch.uint8)  # views as predict makes them
    with torch.no_grad():
        ours, theirs = load_predictor(run=run, device="cpu")(clips), TorchPredictor(*load_run(run))(clips)
    for h, t in TEMPS.items():
        torch.testing.assert_close(ours[h], theirs[h] / t, rtol=1e-4, atol=1e-5)

    result = export_run(run, "torchscript", tmp_path / "student.pt")
    assert json.loads(sidecar_path(result.path).read_text())["temperature"] == TEMPS
    with torch.no_grad():
        exported = load_exported(result.path)(clips)
    for h, t in TEMPS.items():  # the file alone gives the calibrated logits
        torch.testing.assert_close(exported[h], theirs[h] / t, rtol=1e-4, atol=1e-5)

    # the raw evaluation is written beside the calibrated one, not over it
    assert (run / "predictions" / "validation_uncalibrated_metrics.json").is_file()
    assert "temperature_verb" in json.loads((run / "predictions" / "validation_metrics.json").read_text())


def test_temperatures_of_other_weights_are_not_applied(run: Path, tmp_path: Path):
    from egodistill.engine.checkpoint import LAST_DIR, WEIGHTS_FILE, load_run, save_weights
    from egodistill.pipelines.evaluate import run_evaluate

    copy = tmp_path / "rgb"
    shutil.copytree(run, copy)
    with_temperatures(copy, TEMPS)
    _, model, _ = load_run(copy)
    torch.nn.init.normal_(model.head["verb"].weight)  # the last weights: other than the best
    save_weights(model, copy / LAST_DIR / WEIGHTS_FILE)
    with pytest.warns(UserWarning, match="fitted for other weights"):
        m = run_evaluate(copy, weights="last", plots=False, progress=False)
    assert "temperature_verb" not in m
    assert "temperature_verb" in run_evaluate(copy, plots=False, progress=False)  # the best: applied


def test_calibrate_refuses_a_run_without_held_out_clips(synth_root: Path, tmp_path: Path, capsys):
    from egodistill.pipelines.train import run_train

    cfg = load_config(write_config(synth_root, tmp_path / "cfg.yaml", tmp_path / "rgb",
                                   data={"heldout_fraction": 0.0}, train={"epochs": 1}))
    run_train(cfg, progress=False)
    assert cli.main(["calibrate", str(tmp_path / "rgb"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "held out no clips" in err and "Traceback" not in err
    assert not (tmp_path / "rgb" / "calibration.json").exists()
    assert cli.main(["calibrate", str(tmp_path / "nowhere")]) == 1
    assert "run folder not found" in capsys.readouterr().err
