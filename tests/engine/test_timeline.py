"""Streaming prediction (issue 15, points 1, 2 and 6): windows in bounded memory, timelines and
their outputs, several files, batch sizes, and awkward video files."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from egodistill import cli
from egodistill.engine.predict import load_predictor, predict_clips
from egodistill.engine.stream import VideoReader, windows
from egodistill.engine.timeline import merge_segments, predict_timeline, stream_videos
from media import frame_image, make_run, write_video
from test_hostile import run_cli, wav_file


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("run") / "student", arch="cnn3d_nano")


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("v") / "six.mp4", seconds=6, fps=10)


# ---------------------------------------------------------------------------------------------
# windows()
# ---------------------------------------------------------------------------------------------


def timed(times):
    return ((float(t), np.full((1, 1, 3), i, np.uint8)) for i, t in enumerate(times))


def ids(w):
    return [int(f[0, 0, 0]) for f in w.frames]


def test_windows_cover_the_video_with_overlap():
    got = list(windows(timed(np.arange(50) / 10), window=2.0, hop=1.0, frame_seconds=0.1))  # 5 s at 10 fps
    assert [(w.start, w.end) for w in got] == [(0, 2), (1, 3), (2, 4), (3, 5)]
    assert ids(got[0]) == list(range(20)) and ids(got[3]) == list(range(30, 50))


def test_windows_hold_only_the_open_windows():
    held = []

    def frames():
        for i in range(10_000):  # 1000 s at 10 fps
            held.append(i)
            yield i / 10, i

    n = 0
    for w in windows(frames(), window=2.0, hop=1.0):
        assert len(w.frames) == 20
        n += 1
    assert n == 999  # the last full window is [998, 1000) s


def test_a_video_shorter_than_one_window_is_one_window():
    (w,) = windows(timed([0, 0.1, 0.2]), window=5.0, hop=1.0, frame_seconds=0.1)
    assert (w.start, ids(w)) == (0, [0, 1, 2]) and w.end == pytest.approx(0.3)


def test_windows_skip_gaps_and_cover_the_tail():
    # variable frame rate: a burst, a 2.5 s gap, a burst; hop larger than the window drops frames between
    got = list(windows(timed([0, 0.1, 0.2, 3.0, 3.1, 3.5]), window=1.0, hop=0.5, frame_seconds=0.1))
    assert [(w.start, ids(w)) for w in got] == [(0.0, [0, 1, 2]), (2.5, [3, 4]), (3.0, [3, 4, 5])]
    got = list(windows(timed(np.arange(40) / 10), window=1.0, hop=2.0))
    assert [ids(w)[0] for w in got] == [0, 20] and all(len(w.frames) == 10 for w in got)
    with pytest.raises(ValueError, match="positive seconds"):
        list(windows(timed([0]), window=0, hop=1))


def test_merge_segments_joins_equal_top_actions():
    def w(start, verb, noun, p):
        return {"start": start, "end": start + 2, "verb": [{"name": verb, "prob": 0.5}],
                "noun": [{"name": noun, "prob": 0.5}], "action": [{"name": f"{verb} {noun}", "prob": p}]}

    segs = merge_segments([w(0, "take", "cup", 0.2), w(1, "take", "cup", 0.4), w(2, "put", "cup", 0.3)])
    assert [(s["start"], s["end"], s["label"], s["windows"]) for s in segs] == [(0, 2, "take cup", 2), (2, 4, "put cup", 1)]
    assert segs[0]["verb"] == "take" and segs[0]["noun"] == "cup" and segs[0]["confidence"] == pytest.approx(0.3)


# ---------------------------------------------------------------------------------------------
# Timelines through the model
# ---------------------------------------------------------------------------------------------


def test_short_video_window_equals_the_whole_clip_prediction(run, tmp_path):
    clip = write_video(tmp_path / "short.mp4", frames=7, fps=10)
    predictor = load_predictor(run=run, device="cpu")
    (whole,) = predict_clips([clip], predictor, k=3)
    timeline = predict_timeline(clip, predictor, window=4.0, hop=1.0, k=3)
    (w,) = timeline["windows"]
    assert w["frames"] == whole["frames"] == 7 and timeline["complete"]
    for head in ("verb", "noun", "action"):
        assert [x["name"] for x in w[head]] == [x["name"] for x in whole[head]]
        assert [x["prob"] for x in w[head]] == pytest.approx([x["prob"] for x in whole[head]], abs=1e-6)


def test_timeline_is_the_same_for_batch_sizes_1_and_n(run, video):
    predictor = load_predictor(run=run, device="cpu")
    one = predict_timeline(video, predictor, window=1.0, hop=0.5, k=4, batch_size=1)
    many = predict_timeline(video, predictor, window=1.0, hop=0.5, k=4, batch_size=5)
    assert len(one["windows"]) == len(many["windows"]) == 11
    for a, b in zip(one["windows"], many["windows"]):
        assert (a["start"], a["end"], a["frames"]) == (b["start"], b["end"], b["frames"])
        for head in ("verb", "noun", "action"):
            assert [x["name"] for x in a[head]] == [x["name"] for x in b[head]]
            assert [x["prob"] for x in a[head]] == pytest.approx([x["prob"] for x in b[head]], abs=1e-5)
    assert one["segments"] == many["segments"]
    # each window is the run's test views of its frames: 2 clips of 4 frames
    assert one["windows"][0]["frames"] == 10 and one["windows"][0]["start"] == 0.0


def test_predict_window_writes_json_csv_and_plot(run, video, tmp_path, capsys):
    other = write_video(tmp_path / "other.mkv", seconds=2, fps=10, codec="ffv1")
    js, cs, png = tmp_path / "t.json", tmp_path / "t.csv", tmp_path / "t.png"
    code, out, err = run_cli(capsys, "predict", video, other, "--run", run, "--window", 2, "--hop", 1,
                             "--json-out", js, "--csv", cs, "--plot", png, "--top", 2, "--batch-size", 3)
    assert code == 0, err
    assert "six.mp4 (6.0 s, 10 fps; windows of 2 s every 1 s)" in out and "segments (" in out
    records = json.loads(js.read_text())
    assert [Path(r["video"]).name for r in records] == ["six.mp4", "other.mkv"]
    assert all(r["complete"] for r in records) and len(records[0]["windows"]) == 5
    assert {"start", "end", "label", "verb", "noun", "confidence", "windows"} <= set(records[0]["segments"][0])
    rows = list(csv.DictReader(cs.open()))
    assert len(rows) == 5 + 1 and rows[0]["verb_1"] == records[0]["windows"][0]["verb"][0]["name"]
    assert float(rows[0]["verb_2_prob"]) == pytest.approx(records[0]["windows"][0]["verb"][1]["prob"], abs=1e-6)
    for name in ("t_six.png", "t_other.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, _ = run_cli(capsys, "predict", video, "--run", run, "--window", 2, "--json")
    assert code == 0 and json.loads(out)[0]["hop"] == 1.0  # hop defaults to half the window
    code, out, _ = run_cli(capsys, "predict", video, "--run", run, "--window", 3, "--hop", 3, "--csv", "-")
    assert code == 0 and out.splitlines()[0].startswith("video,window,start,end") and len(out.splitlines()) == 3


def test_ctrl_c_leaves_valid_outputs(run, video, tmp_path):
    predictor = load_predictor(run=run, device="cpu")
    calls = {"n": 0}

    class Interrupting:
        spec = predictor.spec

        def __call__(self, clips):
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
            return predictor(clips)

    js, cs, png = tmp_path / "t.json", tmp_path / "t.csv", tmp_path / "t.png"
    js.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        stream_videos([video], Interrupting(), window=1.0, hop=0.5, batch_size=2, json_out=js, csv_out=cs, plot=png)
    (record,) = json.loads(js.read_text())
    assert record["complete"] is False and len(record["windows"]) == 4 and record["segments"]
    assert len(list(csv.DictReader(cs.open()))) == 4 and png.is_file()
    assert not list(tmp_path.glob(".*tmp*"))


def test_predict_options_are_checked(run, video, capsys):
    code, _, err = run_cli(capsys, "predict", video, "--run", run, "--csv", "x.csv")
    assert code == 1 and "--csv go with a timeline: add --window SECONDS" in err
    code, _, err = run_cli(capsys, "predict", video, "--run", run, "--device", "tpu")
    assert code == 1 and "--device 'tpu'" in err
    if not torch.cuda.is_available():
        code, _, err = run_cli(capsys, "predict", video, "--run", run, "--device", "cuda")
        assert code == 1 and "no CUDA device" in err
    with pytest.raises(SystemExit):
        cli.main(["predict", str(video), "--run", str(run), "--window", "-1"])
    assert "positive number of seconds" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Awkward files (point 6)
# ---------------------------------------------------------------------------------------------


def test_a_file_without_video_is_named(run, tmp_path, capsys):
    audio = wav_file(tmp_path / "voice.wav")
    for extra in ([], ["--window", "1"]):
        code, _, err = run_cli(capsys, "predict", audio, "--run", run, *extra)
        assert code == 1 and "voice.wav: has no video stream (it holds audio)" in err
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 100)
    code, _, err = run_cli(capsys, "predict", junk, "--run", run, "--window", "1")
    assert code == 1 and "junk.mp4: cannot be opened as a video" in err


def test_a_truncated_file_predicts_what_decodes_and_warns(run, tmp_path, capsys):
    full = write_video(tmp_path / "full.mkv", seconds=6, fps=10)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    reader = VideoReader(cut)
    times = [t for t, _ in reader]
    assert 1.0 < times[-1] < 5.0 and reader.warning and "decoding stopped at" in reader.warning
    code, out, err = run_cli(capsys, "predict", cut, "--run", run, "--window", "1", "--hop", "1")
    assert code == 0, err
    assert "warning: " in out and "decoding stopped at" in out and "segments (" in out
    code, out, err = run_cli(capsys, "predict", cut, "--run", run, "--json")
    assert code == 0 and "decoding stopped at" in json.loads(out)[0]["warning"] and "warning" in err


def test_odd_sizes_variable_rate_and_rotation(run, tmp_path):
    odd = write_video(tmp_path / "odd.mkv", seconds=1, fps=10, size=(77, 101), codec="ffv1")
    frames = [img for _, img in VideoReader(odd)]
    assert frames[0].shape == (77, 101, 3)
    assert np.abs(frames[2].astype(int) - frame_image(2, 77, 101)).max() <= 3  # lossless but for YUV rounding
    predictor = load_predictor(run=run, device="cpu")
    assert predict_timeline(odd, predictor, window=0.5, hop=0.5)["windows"][0]["frames"] == 5
    big = write_video(tmp_path / "big.mkv", frames=2, size=(300, 401), codec="ffv1")
    assert [img.shape for _, img in VideoReader(big)] == [(256, 342, 3)] * 2  # short side 256, as before

    times = [0.0, 0.05, 0.1, 0.15, 2.0, 2.6, 3.4]
    vfr = write_video(tmp_path / "vfr.mkv", times=times, codec="ffv1")
    assert [round(t, 3) for t, _ in VideoReader(vfr)] == times
    timeline = predict_timeline(vfr, predictor, window=1.0, hop=1.0)
    assert [(w["start"], w["frames"]) for w in timeline["windows"]] == [(0.0, 4), (2.0, 2), (3.0, 1)]

    upright = write_video(tmp_path / "up.mp4", frames=3, size=(32, 48))
    turned = write_video(tmp_path / "turned.mp4", frames=3, size=(32, 48), rotation=90)
    reader = VideoReader(turned)
    a = [img for _, img in VideoReader(upright)]
    b = [img for _, img in reader]
    assert reader.rotation == 90 and b[0].shape == (48, 32, 3)
    assert np.array_equal(b[1], np.rot90(a[1]))  # shown turned 90 degrees counterclockwise
    assert predict_timeline(turned, predictor, window=1.0, hop=1.0)["rotation"] == 90
