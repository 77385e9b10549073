"""Several models' top-k on one video as one table, and the demo's summary figure."""
from egodistill.engine.plots import plot_model_summary
from egodistill.engine.predict import format_predictions_side_by_side


def _record(names, probs):
    return {"video": "clip.mp4", "frames": 10, "fps": 30.0,
            "verb": [{"class": i, "name": n, "prob": p} for i, (n, p) in enumerate(zip(names, probs))]}


def test_side_by_side_puts_each_models_rank_on_one_line():
    text = format_predictions_side_by_side({"baseline": _record(["cut", "wash"], [0.6, 0.3]),
                                            "student": _record(["wash", "cut"], [0.7, 0.2])})
    lines = text.splitlines()
    assert lines[0] == "clip.mp4 (10 frames, 30 fps)"
    assert lines[1].split() == ["head", "rank", "baseline", "student"]
    assert lines[2].split() == ["verb", "1", "cut", "0.600", "wash", "0.700"]
    assert lines[3].split() == ["2", "wash", "0.300", "cut", "0.200"]
    # columns line up: the student's column starts at the same offset on every row
    assert lines[2].index("wash") == lines[3].index("cut", lines[3].index("wash") + 1) == lines[1].index("student")


def test_summary_figure_is_written(tmp_path):
    rows = [{"model": "baseline", "verb_top1": 40.0, "noun_top1": 30.0, "action_top1": 12.0, "gflops": 0.05},
            {"model": "ensemble", "verb_top1": 80.0, "noun_top1": 35.0, "action_top1": 30.0, "gflops": float("nan")}]
    path = plot_model_summary(rows, tmp_path / "summary.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
