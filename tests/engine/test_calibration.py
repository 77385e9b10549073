"""Temperature scaling: the fit finds the temperature that generated the labels, lowers the NLL of
a too-soft ensemble, and never changes a prediction (the distillation run's use of it is tested in
test_end_to_end.py); a trained model's temperatures are folded into its heads exactly and only
for the weights they were fitted for (the `calibrate` command: test_calibrate_run.py)."""
from __future__ import annotations


import pytest
import torch

from egodistill.engine.calibration import calibration_record, fit_temperature
from egodistill.distill.ensemble import EnsembleTeacher


def sampled(temperature: float, n: int = 20000, classes: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Return logits [n, classes] and labels drawn from softmax(logits / temperature)."""
    g = torch.Generator().manual_seed(seed)
    z = 3.0 * torch.randn(n, classes, generator=g)
    y = torch.multinomial((z / temperature).softmax(-1), 1, generator=g).squeeze(1)
    return z, y


@pytest.mark.parametrize("true_t", [0.3, 1.0, 4.0])
def test_fit_finds_the_temperature_the_labels_were_drawn_with(true_t):
    z, y = sampled(true_t)
    assert fit_temperature(z, y) == pytest.approx(true_t, rel=0.06)


def test_fit_ignores_unlabelled_rows_and_refuses_none():
    z, y = sampled(0.5, n=4000)
    y_half = y.clone()
    y_half[::2] = -1
    assert fit_temperature(z, y_half) == pytest.approx(fit_temperature(z[1::2], y[1::2]), rel=1e-6)
    with pytest.raises(ValueError, match="no labelled samples"):
        fit_temperature(z[:3], torch.full((3,), -1))


def test_a_head_right_on_every_sample_is_left_as_it_is():
    z, _ = sampled(1.0, n=50)
    # the NLL of labels that are all top-1 falls as T -> 0: no minimum, so no temperature
    assert fit_temperature(z, z.argmax(-1)) == 1.0
    y = z.argmax(-1)
    y[0] = (y[0] + 1) % z.shape[1]  # one error: a finite temperature again
    assert fit_temperature(z, y) != 1.0


def test_record_lowers_nll_and_ece_of_a_too_soft_ensemble():
    z, y = sampled(0.25, n=5000)  # the logits are four times too soft for their labels
    rec = calibration_record({"verb": z}, {"verb": y})
    t = rec["temperature"]["verb"]
    assert t == pytest.approx(0.25, rel=0.1)
    nll, ece = rec["nll"]["verb"], rec["ece"]["verb"]
    assert nll[1] < nll[0] and ece[1] < ece[0] / 3


def test_ensemble_divides_each_head_by_its_temperature_and_keeps_the_argmax():
    g = torch.Generator().manual_seed(1)
    a = {"verb": torch.randn(5, 4, generator=g), "noun": torch.randn(5, 3, generator=g)}
    b = {"verb": torch.randn(5, 4, generator=g), "noun": torch.randn(5, 3, generator=g)}
    plain = EnsembleTeacher([lambda batch: a, lambda batch: b])({})
    scaled = EnsembleTeacher([lambda batch: a, lambda batch: b], temperatures={"noun": 0.5})({})
    assert torch.allclose(scaled["noun"], plain["noun"] / 0.5)
    assert torch.equal(scaled["verb"], plain["verb"])  # no temperature: unchanged
    assert torch.equal(scaled["noun"].argmax(-1), plain["noun"].argmax(-1))
    with pytest.raises(ValueError, match="temperature"):
        EnsembleTeacher([lambda batch: a], temperatures={"verb": 0.0})


@pytest.mark.parametrize("weighting", ["uniform", "per-sample"])
def test_calibration_record_fits_the_ensemble_as_it_weighs(weighting):
    from types import SimpleNamespace

    from egodistill.distill.teachers import ensemble_calibration_record

    z, y = sampled(0.5, n=3000, classes=5)
    g = torch.Generator().manual_seed(3)
    noise = {"verb": torch.randn(3000, 5, generator=g)}  # a teacher that knows nothing
    logits = [{"verb": z}, noise]
    ensemble = EnsembleTeacher([lambda batch: logits[0], lambda batch: logits[1]], weighting)
    runs = [SimpleNamespace(run_dir="a"), SimpleNamespace(run_dir="b")]
    rec = ensemble_calibration_record(runs, ensemble, logits, {"verb": y})
    combined = ensemble.combine_teachers(logits, {"labels": {"verb": y}})
    assert rec["teachers"] == ["a", "b"] and rec["samples"] == 3000
    assert rec["temperature"]["verb"] == pytest.approx(fit_temperature(combined["verb"], y), rel=1e-9)
    if weighting == "uniform":  # the informative logits at half scale: too soft, sharpened
        assert rec["temperature"]["verb"] < 0.5 and rec["nll"]["verb"][1] < rec["nll"]["verb"][0] - 0.05


# --- a trained model's temperatures (egodistill calibrate) ---------------------------------------


def tiny_cnn():
    from egodistill.models.cnn3d import VideoCNN

    torch.manual_seed(0)
    return VideoCNN({"verb": 5, "noun": 7}, 3, widths=(4, 8), strides=((1, 2, 2), (2, 2, 2))).eval()


def test_scaled_heads_divide_the_logits_and_keep_every_prediction():
    from egodistill.engine.calibration import scale_heads

    model = tiny_cnn()
    for layer in model.head.values():  # a non-zero bias, so that scaling the weight alone would show
        torch.nn.init.normal_(layer.bias)
    x = torch.randn(6, 4, 3, 16, 16)
    with torch.no_grad():
        before = model(x)
        after = scale_heads(model, {"verb": 0.5, "noun": 2.0})(x)
    torch.testing.assert_close(after["verb"], before["verb"] / 0.5, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(after["noun"], before["noun"] / 2.0, rtol=1e-5, atol=1e-6)
    assert torch.equal(after["verb"].argmax(-1), before["verb"].argmax(-1))


@pytest.mark.parametrize("temps, match", [({"action": 2.0}, "no linear head action"),
                                          ({"verb": 0.0}, "positive number"),
                                          ({"verb": float("nan")}, "positive number")])
def test_scaling_refuses_unknown_heads_and_bad_temperatures(temps, match):
    from egodistill.engine.calibration import scale_heads

    model = tiny_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        scale_heads(model, {"noun": 2.0, **temps})  # a good head first: it must be left unscaled too
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_nan_logits_are_refused_not_fitted():
    z, y = sampled(0.5, n=200)
    z[3, 1] = float("nan")
    with pytest.raises(ValueError, match="1 of 200 samples have NaN"):
        fit_temperature(z, y)


def test_a_calibration_record_applies_only_to_the_weights_it_was_fitted_for(tmp_path):
    from egodistill.atomic import write_json
    from egodistill.engine.calibration import (
        MODEL_CALIBRATION_FILE,
        model_calibration_record,
        read_model_temperatures,
        weights_digest,
    )
    from egodistill.engine.checkpoint import CheckpointError, save_weights

    model = tiny_cnn()
    save_weights(model, tmp_path / "model.safetensors")
    assert read_model_temperatures(tmp_path, tmp_path / "model.safetensors") == {}  # none fitted yet
    z, y = sampled(0.5, n=400)
    record = model_calibration_record({"verb": z}, {"verb": y}, weights_digest(tmp_path / "model.safetensors"),
                                      clips=400)
    write_json(tmp_path / MODEL_CALIBRATION_FILE, record)
    temps = read_model_temperatures(tmp_path, tmp_path / "model.safetensors")
    assert temps == {"verb": pytest.approx(0.5, rel=0.2)}
    # the weights change (training went on): the old temperatures are not applied
    torch.nn.init.normal_(model.head["verb"].weight)
    save_weights(model, tmp_path / "model.safetensors")
    with pytest.warns(UserWarning, match="fitted for other weights"):
        assert read_model_temperatures(tmp_path, tmp_path / "model.safetensors") == {}
    (tmp_path / MODEL_CALIBRATION_FILE).write_text('{"temperature": {"verb": -1}}')
    with pytest.raises(CheckpointError, match="not a calibration record"):
        read_model_temperatures(tmp_path, tmp_path / "model.safetensors")
