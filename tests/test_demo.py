"""The demo end to end at --quick size: every model trained, evaluated and reported."""
import json
import math

import pytest

from egodistill.cli import main
from egodistill.demo import TEACHERS


@pytest.mark.slow
def test_quick_demo_writes_table_report_and_prediction(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "results.json").read_text())
    names = [r["model"] for r in result["rows"]]
    assert names == [t[0] for t in TEACHERS] + ["ensemble_teacher", "student", "student_half_frames"]
    for r in result["rows"]:
        assert 0 <= r["action_top1"] <= 100 and 0 <= r["ece"] <= 100, r
        assert r["action_top1"] <= min(r["verb_top1"], r["noun_top1"]) + 1e-6  # action needs both right
    half = result["rows"][-1]
    assert half["frames"] * 2 == result["rows"][-2]["frames"]
    assert half["gflops"] < result["rows"][-2]["gflops"]  # fewer frames, fewer FLOPs
    ev = result["evidence"]
    by = {r["model"]: r for r in result["rows"]}
    assert math.isclose(ev["student_minus_baseline_action"],
                        by["student"]["action_top1"] - by["rgb_baseline"]["action_top1"])
    report = (out / "report.md").read_text()
    assert "| student |" in report and "ensemble_teacher" in report and "![" in report
    assert (out / "clips").is_dir() and any(p.suffix == ".mp4" for p in (out / "clips").iterdir())
    assert "verb" in printed and "demo finished" in printed
    # a second run into the same folder is refused rather than mixing two runs
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 1
