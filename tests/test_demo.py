"""The demo end to end at --quick size: every model trained, evaluated and reported."""
import dataclasses
import json
import math

import pytest

from egodistill.cli import main


@pytest.mark.slow
def test_quick_demo_writes_table_report_and_prediction(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress", "--workers", "1",
                 "--student", "cnn3d_nano", "--student", "swin_nano"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "results.json").read_text())
    names = [r["model"] for r in result["rows"]]
    assert names == ["rgb_baseline", "flow_teacher", "audio_teacher", "layout_teacher", "ensemble_teacher",
                     "student", "student_half_frames", "student_unlabelled",
                     "rgb_baseline_swin_nano", "student_swin_nano", "student_half_frames_swin_nano"]
    arch = {r["model"]: r["arch"] for r in result["rows"]}
    assert arch["rgb_baseline"] == arch["student"] == arch["student_half_frames"] == "cnn3d_nano"
    assert arch["rgb_baseline_swin_nano"] == arch["student_swin_nano"] == "swin_nano"
    for r in result["rows"]:
        assert 0 <= r["action_top1"] <= 100 and 0 <= r["ece"] <= 100 and 0 <= r["ece_uncalibrated"] <= 100, r
        # every single model is temperature-scaled on its held-out clips before it is evaluated
        assert (out / "runs" / r["model"] / "calibration.json").is_file() == (r["model"] != "ensemble_teacher")
        assert r["action_top1"] <= min(r["verb_top1"], r["noun_top1"]) + 1e-6  # action needs both right
    by = {r["model"]: r for r in result["rows"]}
    half, full = by["student_half_frames"], by["student"]
    assert half["frames"] * 2 == full["frames"]
    assert half["gflops"] < full["gflops"]  # fewer frames, fewer FLOPs
    ev = result["evidence"]
    assert math.isclose(ev["student_minus_baseline_action"],
                        by["student"]["action_top1"] - by["rgb_baseline"]["action_top1"])
    assert math.isclose(ev["student_minus_baseline_verb_swin_nano"],
                        by["student_swin_nano"]["verb_top1"] - by["rgb_baseline_swin_nano"]["verb_top1"])
    assert math.isclose(ev["unlabelled_student_minus_student_action"],
                        by["student_unlabelled"]["action_top1"] - by["student"]["action_top1"])
    assert arch["student_unlabelled"] == "cnn3d_nano"
    report = (out / "report.md").read_text()
    assert report.index("![summary](summary.png)") < report.index("| student |") < report.index("## Plots")
    assert (out / "summary.png").stat().st_size > 0 and "ensemble_teacher" in report
    # the exported clip predicted by the baseline and the student, side by side
    assert set(result["predictions"]) == {"rgb_baseline", "student", "student_unlabelled"}
    assert "rgb_baseline" in result["prediction_text"] and "student" in result["prediction_text"]
    assert (out / "clips").is_dir() and any(p.suffix == ".mp4" for p in (out / "clips").iterdir())
    assert "verb" in printed and "demo finished" in printed
    # a second run into the same folder is refused rather than mixing two runs
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 1


def test_unknown_student_architecture_fails_at_start_naming_the_closest(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path / "d"), "--student", "cnn3d_nan"]) == 1
    err = capsys.readouterr().err
    assert "unknown --student 'cnn3d_nan'" in err and "cnn3d_nano" in err and "Traceback" not in err
    assert not (tmp_path / "d").exists()
    assert main(["demo", "--quick", "--out", str(tmp_path / "d"), "--student", "stlt_nano"]) == 1
    err = capsys.readouterr().err
    assert "--student 'stlt_nano' reads layout" in err and "Traceback" not in err
    assert not (tmp_path / "d").exists()


def test_overwrite_refuses_a_folder_the_demo_did_not_write(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    assert main(["demo", "--quick", "--out", str(folder), "--overwrite", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "thesis.tex" in err and "not deleted" in err and "Traceback" not in err
    assert (folder / "thesis.tex").read_text() == "years of work"


def test_overwrite_refuses_a_folder_of_runs_the_demo_did_not_write(tmp_path, capsys):
    """A folder whose names a demo also uses (runs/) but with no demo dataset or results is kept."""
    folder = tmp_path / "mine"
    (folder / "runs" / "epic_swin_t").mkdir(parents=True)
    (folder / "runs" / "epic_swin_t" / "model.safetensors").write_bytes(b"weeks of GPU time")
    assert main(["demo", "--quick", "--out", str(folder), "--overwrite", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "no demo dataset or results" in err and "not deleted" in err and "Traceback" not in err
    assert (folder / "runs" / "epic_swin_t" / "model.safetensors").read_bytes() == b"weeks of GPU time"


def test_demo_dataset_holds_the_unlabelled_videos_its_factor_asks_for():
    from egodistill.demo import HELDOUT_FRACTION, DemoSettings, synth_config
    from egodistill.synth import plan_dataset

    s = DemoSettings()
    plain = synth_config(dataclasses.replace(s, unlabelled_factor=0), seed=0, quick=False)
    assert plain.num_unlabelled == 0
    train = sum(v.split == "train" for v in plan_dataset(plain))
    doubled = synth_config(s, seed=0, quick=False)
    assert doubled.num_unlabelled == math.ceil(2 * train * (1 - HELDOUT_FRACTION))
    # the labelled videos are the same with or without the unlabelled ones
    labelled = [v for v in plan_dataset(doubled) if v.split != "unlabelled"]
    assert [(v.video_id, v.split) for v in labelled] == [(v.video_id, v.split) for v in plan_dataset(plain)]


@pytest.mark.parametrize("factor", ["-1", "inf", "nan"])
def test_a_bad_unlabelled_factor_is_refused_before_any_work(tmp_path, capsys, factor):
    assert main(["demo", "--quick", "--out", str(tmp_path / "d"), "--unlabelled", factor]) == 1
    err = capsys.readouterr().err
    assert "--unlabelled must be a number >= 0" in err and "Traceback" not in err
    assert not (tmp_path / "d").exists()


def test_evidence_compares_each_student_with_its_baseline_and_the_ensemble_with_its_best_teacher():
    from egodistill.demo import DemoSettings, demo_evidence

    def row(model, verb, action, ece, raw):
        return {"model": model, "verb_top1": verb, "action_top1": action, "ece": ece, "ece_uncalibrated": raw}

    rows = [row("rgb_baseline", 60, 30, 6, 7), row("flow_teacher", 80, 14, 5, 5), row("layout_teacher", 90, 38, 8, 8),
            row("ensemble_teacher", 100, 61, 17, 17), row("student", 67, 35, 9, 12),
            row("student_half_frames", 66, 33, 7, 7), row("student_unlabelled", 83, 46, 10, 15)]
    ev = demo_evidence(rows, DemoSettings())
    assert ev == {"ensemble_minus_best_teacher_action": 23, "student_minus_baseline_action": 5,
                  "student_minus_baseline_verb": 7, "student_ece_minus_baseline_ece": 3,
                  "student_ece_minus_baseline_ece_uncalibrated": 5,
                  "half_student_minus_baseline_action": 3, "unlabelled_student_minus_student_action": 11,
                  "unlabelled_student_minus_baseline_action": 16, "unlabelled_student_ece_minus_baseline_ece": 4,
                  "unlabelled_student_ece_minus_baseline_ece_uncalibrated": 8}
    # without the unlabelled row (--unlabelled 0) its claims are left out
    assert set(demo_evidence(rows[:-1], DemoSettings(unlabelled_factor=0))) == {
        "ensemble_minus_best_teacher_action", "student_minus_baseline_action", "student_minus_baseline_verb",
        "student_ece_minus_baseline_ece", "student_ece_minus_baseline_ece_uncalibrated",
        "half_student_minus_baseline_action"}


def test_students_match_the_flow_teachers_features_only_when_they_share_its_architecture(tmp_path):
    from egodistill.config import Config
    from egodistill.demo import DemoSettings, student_config

    s = DemoSettings()
    teachers = [tmp_path / "rgb_baseline", tmp_path / "flow_teacher"]
    same = student_config(Config(), tmp_path, "student", s.teachers["flow"], teachers, s)
    assert (same.distill.features.teacher, same.distill.features.alpha) == ("flow", s.feature_alpha)
    assert same.distill.cache.path == str(tmp_path / "teacher_cache.h5") and same.distill.alpha_gt == s.alpha_gt
    other = student_config(Config(), tmp_path, "student_swin_nano", "swin_nano", teachers, s)
    assert other.distill.features.teacher == ""  # another width: no feature matching
    off = student_config(Config(), tmp_path, "student", s.teachers["flow"], teachers,
                         dataclasses.replace(s, feature_teacher=""))
    assert off.distill.features.teacher == ""
