"""The synthetic egocentric dataset: determinism, EPIC formats, stores, and that each modality
carries the evidence it is designed to carry (verb in motion and sound, noun in appearance)."""
from __future__ import annotations

import dataclasses

import csv
import math
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from egodistill import cli
from egodistill.data.annotations import Epic100Reader, build_reader
from egodistill.synth import (
    EPIC_HEADER, MATERIALS, VERB_POOL, SynthConfig, noun_key, noun_parts, plan_dataset, render_video,
    tail_classes, verb_frequencies, write_annotations, write_wav,
)

from conftest import FIXTURES  # tests/fixtures, inside the repository

REAL_EPIC = FIXTURES / "real" / "epic_kitchens_100"


def _verb(name: str) -> int:
    return [v.key for v in VERB_POOL].index(name)


# --------------------------------------------------------------------------------------------
# Plan and annotations (no rendering)
# --------------------------------------------------------------------------------------------


def test_plan_is_deterministic_and_depends_on_seed():
    a, b = plan_dataset(SynthConfig(seed=3)), plan_dataset(SynthConfig(seed=3))
    assert a == b
    c = plan_dataset(SynthConfig(seed=4))
    assert [s.verb for v in a for s in v.segments] != [s.verb for v in c for s in v.segments]


def test_plan_splits_participants_and_segment_bounds():
    cfg = SynthConfig(seed=1, num_videos=20, num_participants=4, segments_per_video=5)
    videos = plan_dataset(cfg)
    assert len(videos) == 20
    unseen = f"P{cfg.num_participants:02d}"
    assert {v.split for v in videos if v.participant == unseen} == {"validation"}
    train_participants = {v.participant for v in videos if v.split == "train"}
    assert train_participants == {f"P{i:02d}" for i in range(1, cfg.num_participants)}
    assert any(v.split == "validation" and v.participant != unseen for v in videos)  # seen ones too
    assert len({v.video_id for v in videos}) == len(videos)
    for v in videos:
        assert v.video_id.startswith(v.participant + "_")
        prev_stop = 0
        for i, s in enumerate(v.segments):
            assert s.narration_id == f"{v.video_id}_{i}"
            assert prev_stop < s.start_frame <= s.stop_frame <= v.num_frames  # 1-based, no overlap
            assert s.stop_frame - s.start_frame + 1 >= 4
            assert 0 <= s.verb < cfg.num_verbs and 0 <= s.noun < cfg.num_nouns
            assert s.label_verb == s.verb  # no label noise by default
            prev_stop = s.stop_frame


def test_class_frequencies_are_long_tailed():
    cfg = SynthConfig(seed=0, num_videos=60, segments_per_video=10, class_imbalance=1.0)
    verbs = np.bincount([s.verb for v in plan_dataset(cfg) for s in v.segments], minlength=cfg.num_verbs)
    assert verbs[0] > 2.5 * verbs[-1]  # id 0 most frequent, as EPIC's ids roughly are


def test_label_noise_only_in_train_and_at_the_asked_rate():
    cfg = SynthConfig(seed=0, num_videos=60, segments_per_video=10, label_noise=0.2)
    videos = plan_dataset(cfg)
    train = [s for v in videos if v.split == "train" for s in v.segments]
    val = [s for v in videos if v.split == "validation" for s in v.segments]
    assert all(s.label_verb == s.verb for s in val)
    rate = np.mean([s.label_verb != s.verb for s in train])
    assert abs(rate - 0.2) < 0.06


def test_noun_vocabulary_is_unique_shape_material_pairs():
    keys = [noun_key(i) for i in range(24)]
    assert len(set(keys)) == 24
    first = [noun_parts(i) for i in range(8)]
    assert len({m for _, m in first}) == len(MATERIALS)  # a small vocabulary still mixes materials


def test_tail_classes_hold_at_most_a_fifth():
    counts = np.array([50, 30, 10, 5, 3, 2])
    tail = tail_classes(counts)
    assert tail == [2, 3, 4, 5]  # the head (50 + 30) reaches 80 %, the rest is the tail
    assert tail_classes(np.array([50, 29, 10, 5, 3, 3])) == [3, 4, 5]  # head needs class 2 too
    assert counts[tail].sum() <= 0.2 * counts.sum()
    assert tail_classes(np.array([10, 10])) == [1]  # never empty


def test_config_validation_names_the_parameter():
    with pytest.raises(ValueError, match="num_verbs"):
        SynthConfig(num_verbs=99).validate()
    with pytest.raises(ValueError, match="gap_frames"):
        SynthConfig(gap_frames=(5, 2)).validate()


def test_annotations_parse_with_the_real_epic_header(tmp_path):
    cfg = SynthConfig.tiny(seed=2)
    videos = plan_dataset(cfg)
    counts = write_annotations(tmp_path, cfg, videos)
    ann = tmp_path / "annotations"
    with open(REAL_EPIC / "EPIC_100_validation.csv", newline="") as f:
        real_header = next(csv.reader(f))
    for split in ("train", "validation"):
        with open(ann / f"EPIC_100_{split}.csv", newline="") as f:
            assert next(csv.reader(f)) == real_header == EPIC_HEADER
    for name in ("verb", "noun"):
        with open(ann / f"EPIC_100_{name}_classes.csv", newline="") as f:
            with open(REAL_EPIC / f"EPIC_100_{name}_classes.csv", newline="") as g:
                assert next(csv.reader(f)) == next(csv.reader(g))
    reader = Epic100Reader({
        "train": ann / "EPIC_100_train.csv", "validation": ann / "EPIC_100_validation.csv",
        "verb_classes": ann / "EPIC_100_verb_classes.csv", "noun_classes": ann / "EPIC_100_noun_classes.csv",
        "tail_verbs": ann / "EPIC_100_tail_verbs.csv", "tail_nouns": ann / "EPIC_100_tail_nouns.csv",
        "unseen_participants": ann / "EPIC_100_unseen_participant_ids_validation.csv",
    })
    info = reader.info()
    assert info.heads["verb"] == [VERB_POOL[i].key for i in range(cfg.num_verbs)]
    assert info.unseen_participants == {"P03"}
    train, val = reader.samples("train"), reader.samples("validation")
    assert len(train) == counts["train_segments"] and len(val) == counts["validation_segments"]
    by_id = {s.narration_id: (v, s) for v in videos for s in v.segments}
    for sample in train + val:
        v, s = by_id[sample.id]
        assert (sample.video_id, sample.participant) == (v.video_id, v.participant)
        assert (sample.start_frame, sample.stop_frame) == (s.start_frame, s.stop_frame)
        assert sample.labels == {"verb": s.label_verb, "noun": s.noun}
        assert sample.all_noun_classes == (s.noun,)
        # Timestamps agree with frames: frame f is at (f - 1) / fps, to the CSV's 0.01 s.
        assert sample.start_time == pytest.approx((s.start_frame - 1) / cfg.fps, abs=0.006)
        assert sample.stop_time == pytest.approx((s.stop_frame - 1) / cfg.fps, abs=0.006)
    assert all(s.participant != "P03" for s in train)


# --------------------------------------------------------------------------------------------
# Rendering: RGB, detections, audio
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered():
    """Every verb on tiny frames: (cfg, videos, [(frames, detections, audio)])."""
    cfg = SynthConfig(seed=5, num_videos=6, num_participants=3, segments_per_video=6, frames_per_segment=16,
                      height=48, width=48, sample_rate=16000, num_verbs=len(VERB_POOL), class_imbalance=0.0)
    videos = plan_dataset(cfg)
    return cfg, videos, [render_video(cfg, v) for v in videos]


def test_render_is_deterministic(rendered):
    cfg, videos, out = rendered
    frames, dets, audio = render_video(cfg, videos[1])
    np.testing.assert_array_equal(frames, out[1][0])
    np.testing.assert_array_equal(audio, out[1][2])
    assert dets["frames"] == out[1][1]["frames"]
    other = render_video(SynthConfig(**{**cfg.__dict__, "seed": cfg.seed + 1}), videos[1])[0]
    assert not np.array_equal(other, frames)


def test_frames_audio_and_detections_have_the_video_length(rendered):
    cfg, videos, out = rendered
    for v, (frames, dets, audio) in zip(videos, out):
        assert frames.shape == (v.num_frames, cfg.height, cfg.width, 3) and frames.dtype == np.uint8
        assert len(audio) == round(v.num_frames / cfg.fps * cfg.sample_rate)
        assert np.abs(audio).max() <= 1.0
        assert dets["num_frames"] == v.num_frames
        assert {int(k) for k in dets["frames"]} <= set(range(1, v.num_frames + 1))
        for entry in dets["frames"].values():
            for box in [h["box"] for h in entry["hands"]] + [o["box"] for o in entry["objects"]]:
                x1, y1, x2, y2 = box
                assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1
            for hand in entry["hands"]:
                assert hand["side"] in ("left", "right") and hand["state"] in (0, 3, 4)
            scores = [o["score"] for o in entry["objects"]]
            assert scores == sorted(scores, reverse=True)


def _segment_moves(rendered) -> dict[str, list[tuple[float, float, float]]]:
    """{verb: [(object dy, object size ratio, hand path length) per segment]}, from true boxes, in
    units of the short side, relative to the camera (= what flow and boxes see minus ego-motion)."""
    cfg, videos, out = rendered
    d = min(cfg.height, cfg.width)
    moves: dict[str, list] = {}
    for v, (_, dets, _) in zip(videos, out):
        obj, hand = dets["_truth"]["object"], dets["_truth"]["hand"]
        for s in v.segments:
            a, b = s.start_frame - 1, s.stop_frame - 1
            # Boxes are in frame pixels; the background moves with the camera, objects do not,
            # so compare to the hand-object *relative* motion via the object box alone.
            cy = (obj[:, 1] + obj[:, 3]) / 2
            size = np.sqrt((obj[:, 2] - obj[:, 0]) * (obj[:, 3] - obj[:, 1]))
            hc = (hand[:, :2] + hand[:, 2:]) / 2
            hand_rel = hc[a:b + 1] - ((obj[a:b + 1, :2] + obj[a:b + 1, 2:]) / 2)
            path = np.linalg.norm(np.diff(hand_rel, axis=0), axis=1).sum() / d
            moves.setdefault(VERB_POOL[s.verb].key, []).append(((cy[b] - cy[a]) / d, size[b] / size[a], path))
    return moves


def test_the_verb_is_the_motion(rendered):
    moves = _segment_moves(rendered)
    # Camera drift moves the whole frame by < 2 * camera_drift; the designed motions are larger.
    for dy, _, _ in moves.get("lift", []):
        assert dy < -0.12
    for dy, _, _ in moves.get("put-down", []):
        assert dy > 0.12
    for _, ratio, _ in moves.get("push", []):
        assert ratio < 0.8
    for _, ratio, _ in moves.get("pull", []):
        assert ratio > 1.25
    for _, ratio, _ in moves.get("open", []):  # the halves move apart: the box grows
        assert ratio > 1.2
    for _, ratio, _ in moves.get("close", []):
        assert ratio < 0.8
    # Hand path relative to the object: long when the hand works over a still object, short when
    # it holds the object (the box centre still shifts a little as the object turns or splits).
    for verb in ("wipe", "cut", "stir"):
        for _, _, path in moves.get(verb, []):
            assert path > 0.4
    for verb in ("lift", "put-down", "push", "pull", "rotate", "shake", "open", "close"):
        for _, _, path in moves.get(verb, []):
            assert path < 0.3
    assert len(moves) >= 8  # most verbs drawn in this small sample


def test_each_verb_has_its_own_spectral_peak(rendered):
    cfg, videos, out = rendered
    freqs = verb_frequencies(cfg)
    assert np.all(np.diff(np.log(freqs)) > np.log(1.25))  # well separated carriers
    hits = []
    for v, (_, _, audio) in zip(videos, out):
        for s in v.segments:
            a = round((s.start_frame - 1) / cfg.fps * cfg.sample_rate)
            b = round(s.stop_frame / cfg.fps * cfg.sample_rate)
            x = audio[a:b].astype(np.float64)
            spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
            f = np.fft.rfftfreq(len(x), 1 / cfg.sample_rate)
            spectrum[f < 200] = 0  # mains hum
            peak = f[np.argmax(spectrum)]
            hits.append(int(np.argmin(np.abs(np.log(freqs) - np.log(peak)))) == s.verb)
    # Other activity's sounds (audio_distractor_rate) sometimes mask the wearer's own.
    assert np.mean(hits) >= 0.7, f"spectral peak gives the verb for only {np.mean(hits):.0%} of segments"


def test_material_ring_makes_every_action_sound_of_its_material():
    """With `material_ring`, the energy around each material's mode tells the handled object's
    material for most segments, whatever the verb; without it the world is unchanged."""
    from egodistill.synth.vocab import MATERIALS, noun_parts

    base = SynthConfig(seed=3, num_videos=4, num_participants=2, segments_per_video=8, frames_per_segment=16,
                       height=32, width=32, sample_rate=16000, num_verbs=8, class_imbalance=0.0,
                       audio_distractor_rate=0.0)
    video = plan_dataset(base)[0]
    plain = render_video(base, video)[2]
    np.testing.assert_array_equal(plain, render_video(dataclasses.replace(base, material_ring=0.0), video)[2])
    modes = np.array([m[3] for m in MATERIALS])

    def material_hits(audio: np.ndarray) -> float:
        hits = []
        for seg in video.segments:
            a, b = (round(t / base.fps * base.sample_rate) for t in (seg.start_frame - 1, seg.stop_frame))
            spectrum = np.abs(np.fft.rfft(audio[a:b] * np.hanning(b - a)))
            f = np.fft.rfftfreq(b - a, 1 / base.sample_rate)
            # energy within 4 % of each material's mode, per Hz of band
            energy = [spectrum[np.abs(f - m) < 0.04 * m].mean() for m in modes]
            hits.append(int(np.argmax(energy)) == noun_parts(seg.noun)[1])
        return float(np.mean(hits))

    ringing = render_video(dataclasses.replace(base, material_ring=0.3), video)[2]
    assert material_hits(ringing) >= 0.75 > material_hits(plain)


def test_the_noun_is_the_appearance(rendered):
    """The acted-on object's pixels have its material's colour: plastic red, glass cyan, wood brown."""
    cfg, videos, out = rendered
    seen = {}
    for v, (frames, dets, _) in zip(videos, out):
        for s in v.segments:
            if VERB_POOL[s.verb].key not in ("lift", "put-down", "push", "pull", "rotate", "shake"):
                continue  # open/close split the object at its centre; wipe/cut/stir cover it
            mid = (s.start_frame + s.stop_frame) // 2 - 1
            x1, y1, x2, y2 = dets["_truth"]["object"][mid]
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            r = max(1, int(0.15 * (x2 - x1)))
            patch = frames[mid, max(0, int(cy) - r):int(cy) + r + 1, max(0, int(cx) - r):int(cx) + r + 1]
            seen.setdefault(MATERIALS[noun_parts(s.noun)[1]][0], []).append(patch.reshape(-1, 3).mean(0))
    means = {m: np.median(np.array(v), axis=0) for m, v in seen.items()}
    if "plastic" in means:
        r, g, b = means["plastic"]
        assert r > g + 40 and r > b + 40
    if "glass" in means and "wood" in means:
        assert means["glass"][2] > means["wood"][2] + 30  # glass bluish, wood brown
    assert len(means) >= 3


def test_wav_round_trip(tmp_path):
    x = (0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)).astype(np.float32)
    write_wav(tmp_path / "a.wav", x, 8000)
    with wave.open(str(tmp_path / "a.wav")) as f:
        assert (f.getnchannels(), f.getsampwidth(), f.getframerate(), f.getnframes()) == (1, 2, 8000, 8000)
        y = np.frombuffer(f.readframes(8000), "<i2") / 32767
    np.testing.assert_allclose(y, x, atol=1 / 32767)
    assert not (tmp_path / "a.wav.tmp").exists()


# --------------------------------------------------------------------------------------------
# The built dataset (tests/conftest.py: synth_root, synth_config), through the prepare code
# --------------------------------------------------------------------------------------------


def test_built_folder_layout(synth_root):
    names = {p.name for p in synth_root.iterdir()}
    assert {"annotations", "rgb.h5", "flow.h5", "audio.h5", "layout.h5", "data.yaml", "synth.json"} <= names
    assert not any(n.endswith(".tmp") or n.startswith("_work") for n in names)  # no leftovers
    assert not synth_root.with_name(synth_root.name + ".tmp").exists()
    data = yaml.safe_load((synth_root / "data.yaml").read_text())["data"]
    assert data["reader"] == "epic100" and Path(data["root"]) == synth_root.resolve()
    for rel in list(data["files"].values()) + list(data["stores"].values()):
        assert (synth_root / rel).is_file(), rel
    summary = __import__("json").loads((synth_root / "synth.json").read_text())
    assert summary["params"] == SynthConfig.tiny(seed=0).__dict__ | {"gap_frames": [2, 4]}
    assert summary["segments"] == summary["train_segments"] + summary["validation_segments"]


def test_reader_and_stores_agree_with_the_plan(synth_root, synth_config):
    from egodistill.data.stores import AudioStore, FlowStore, LayoutStore, RGBStore

    cfg = SynthConfig.tiny(seed=0)
    videos = {v.video_id: v for v in plan_dataset(cfg)}
    reader = build_reader(synth_config)
    assert reader.splits() == ["train", "validation"]
    info = reader.info()
    assert info.num_classes == {"verb": cfg.num_verbs, "noun": cfg.num_nouns}
    assert info.unseen_participants == {"P03"}
    samples = reader.samples("train") + reader.samples("validation")
    assert {s.participant for s in reader.samples("train")}.isdisjoint(info.unseen_participants)
    assert {s.video_id for s in samples} == set(videos)
    for s in samples:
        assert 0 <= s.labels["verb"] < cfg.num_verbs and 0 <= s.labels["noun"] < cfg.num_nouns
        assert 1 <= s.start_frame <= s.stop_frame <= videos[s.video_id].num_frames

    rgb, flow = RGBStore(synth_root / "rgb.h5"), FlowStore(synth_root / "flow.h5")
    audio, layout = AudioStore(synth_root / "audio.h5"), LayoutStore(synth_root / "layout.h5")
    assert set(rgb.video_ids()) == set(videos)
    for vid, v in videos.items():
        n = v.num_frames
        assert (rgb.num_frames(vid), rgb.first_frame(vid), rgb.fps(vid)) == (n, 1, cfg.fps)
        first, last = rgb.read_frames(vid, [1, n])
        img = cv2.imdecode(np.frombuffer(last, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (cfg.height, cfg.width, 3)
        assert flow.stride(vid) == cfg.flow_stride
        assert flow.num_frames(vid) in (math.ceil(n / cfg.flow_stride), n // cfg.flow_stride)
        assert audio.sample_rate(vid) == cfg.sample_rate
        assert audio.num_samples(vid) == round(n / cfg.fps * cfg.sample_rate)
        boxes = layout.read(vid, list(range(1, n + 1)))
        assert boxes["boxes"].shape[0] == n
        hands = (boxes["category"] == 1) & boxes["valid"]
        assert hands.any(axis=1).mean() > 0.8  # the hand is detected in most frames
        assert set(np.unique(boxes["state"][hands])) <= {0, 3, 4}
    with pytest.raises(KeyError, match="P09_01"):
        rgb.read_frames("P09_01", [1])


def test_flow_follows_the_verb(synth_root):
    """Mean vertical flow over the moving object, relative to the frame's median (the camera):
    up for lift and push, down for put-down and pull."""
    from egodistill.data.stores import FlowStore

    cfg = SynthConfig.tiny(seed=0)
    flow = FlowStore(synth_root / "flow.h5")
    signs = {"lift": -1, "push": -1, "put-down": 1, "pull": 1}
    checked = 0
    for v in plan_dataset(cfg):
        truth = render_video(cfg, v)[1]["_truth"]["object"]
        first = flow.first_frame(v.video_id)
        for s in v.segments:
            verb = VERB_POOL[s.verb].key
            if verb not in signs:
                continue
            numbers = list(range(math.ceil(s.start_frame / cfg.flow_stride) + 1, math.ceil(s.stop_frame / cfg.flow_stride)))
            numbers = [k for k in numbers if first <= k < first + flow.num_frames(v.video_id)]
            _, vs = flow.read_frames(v.video_id, numbers)
            total = 0.0
            for k, data in zip(numbers, vs):
                vv = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE).astype(np.float32) - 128
                x1, y1, x2, y2 = truth[(k - 1) * cfg.flow_stride]
                region = vv[max(0, int(y1)):int(y2) + 1, max(0, int(x1)):int(x2) + 1]
                total += region.mean() - np.median(vv)
            assert np.sign(total) == signs[verb], f"{s.narration_id} ({verb}): mean vertical flow {total:+.1f}"
            checked += 1
    assert checked >= 8


def test_cli_build_is_deterministic_and_atomic(synth_root, tmp_path, capsys):
    """Built again, with two worker processes this time (synth_root: one), the dataset is the same."""
    out = tmp_path / "again"
    assert cli.main(["synth", str(out), "--tiny", "--seed", "0", "--quiet", "--workers", "2"]) == 0
    assert "synth: wrote" in capsys.readouterr().out
    assert not out.with_name("again.tmp").exists()
    for csv_path in sorted((synth_root / "annotations").iterdir()):
        assert (out / "annotations" / csv_path.name).read_bytes() == csv_path.read_bytes(), csv_path.name
    from egodistill.data.stores import RGBStore

    a, b = RGBStore(synth_root / "rgb.h5"), RGBStore(out / "rgb.h5")
    assert sorted(a.video_ids()) == sorted(b.video_ids())
    for vid in a.video_ids():
        n = a.num_frames(vid)
        assert b.num_frames(vid) == n
        numbers = list(range(1, n + 1))
        for k, fa, fb in zip(numbers, a.read_frames(vid, numbers), b.read_frames(vid, numbers)):
            da = cv2.imdecode(np.frombuffer(fa, np.uint8), cv2.IMREAD_COLOR)
            db = cv2.imdecode(np.frombuffer(fb, np.uint8), cv2.IMREAD_COLOR)
            np.testing.assert_array_equal(da, db, err_msg=f"video {vid}, frame {k}")
    from egodistill.data.stores import LayoutStore

    a, b = LayoutStore(synth_root / "layout.h5"), LayoutStore(out / "layout.h5")
    for vid in RGBStore(synth_root / "rgb.h5").video_ids():
        numbers = list(range(a.first_frame(vid), a.first_frame(vid) + a.num_frames(vid)))
        la, lb = a.read(vid, numbers), b.read(vid, numbers)
        assert la.keys() == lb.keys() and all(np.array_equal(la[k], lb[k]) for k in la), vid
    # An existing folder is refused (exit 1, one line naming it) unless --force.
    assert cli.main(["synth", str(out), "--tiny", "--quiet"]) == 1
    assert str(out) in capsys.readouterr().err
    assert cli.main(["synth", str(tmp_path / "x"), "--tiny", "--set", "noise_sdt=3"]) == 1
    assert "noise_sdt" in capsys.readouterr().err and not (tmp_path / "x").exists()


# --------------------------------------------------------------------------------------------
# Unlabelled videos (`synth --unlabelled N`)
# --------------------------------------------------------------------------------------------


def test_unlabelled_videos_leave_the_labelled_ones_unchanged():
    cfg = SynthConfig(seed=2, num_videos=12, num_participants=4)
    labelled = plan_dataset(cfg)
    videos = plan_dataset(SynthConfig(seed=2, num_videos=12, num_participants=4, num_unlabelled=5))
    assert videos[:len(labelled)] == labelled
    extra = videos[len(labelled):]
    assert [v.split for v in extra] == ["unlabelled"] * 5
    assert {v.participant for v in extra} <= {"P01", "P02", "P03"}  # seen participants only
    assert len({v.video_id for v in videos}) == len(videos)
    assert [v.video_index for v in extra] == list(range(12, 17))  # their own renderer seeds
    with pytest.raises(ValueError, match="num_unlabelled"):
        SynthConfig(num_unlabelled=-1).validate()


def test_unlabelled_split_is_written_without_labels(synth_root, synth_unlabelled_root, tmp_path):
    from egodistill.config import config_from_dict
    from egodistill.data.stores import RGBStore

    root = synth_unlabelled_root
    data = yaml.safe_load((root / "data.yaml").read_text())
    assert data["data"]["files"]["unlabelled"] == "annotations/EPIC_100_unlabelled.csv"
    with open(root / "annotations" / "EPIC_100_unlabelled.csv", newline="") as f:
        header = next(csv.reader(f))
    assert "verb_class" not in header and "noun_class" not in header and "narration" not in header
    # the labelled annotations are those of the dataset without unlabelled videos
    for name in ("EPIC_100_train.csv", "EPIC_100_validation.csv", "EPIC_100_verb_classes.csv"):
        assert (root / "annotations" / name).read_bytes() == (synth_root / "annotations" / name).read_bytes()
    reader = build_reader(config_from_dict(data))
    assert reader.splits() == ["train", "validation", "unlabelled"]
    unlabelled = reader.samples("unlabelled")
    assert len(unlabelled) == 3 * SynthConfig.tiny().segments_per_video
    assert all(s.labels == {} for s in unlabelled)
    labelled_videos = {s.video_id for split in ("train", "validation") for s in reader.samples(split)}
    assert {s.video_id for s in unlabelled}.isdisjoint(labelled_videos)
    assert {s.participant for s in unlabelled}.isdisjoint(reader.info().unseen_participants)  # seen ones
    rgb = RGBStore(root / "rgb.h5")
    for s in unlabelled:  # rendered and packed like every other video
        assert s.stop_frame <= rgb.first_frame(s.video_id) + rgb.num_frames(s.video_id) - 1
    summary = __import__("json").loads((root / "synth.json").read_text())
    assert summary["unlabelled_videos"] == 3 and summary["unlabelled_segments"] == len(unlabelled)


def test_cli_unlabelled_flag(tmp_path):
    import argparse

    from egodistill.commands.synth import build_config, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["synth", str(tmp_path / "x"), "--tiny", "--unlabelled", "4"])
    assert build_config(args).num_unlabelled == 4


def test_synth_package_has_small_modules_and_functions():
    """`data/synth.py` was one 1000-line file with a 133-line `render_video`: now a package of
    one module per concern, no function over 60 lines."""
    import ast
    import importlib.util
    import pkgutil

    import egodistill.synth as synth

    names = {m.name for m in pkgutil.iter_modules(synth.__path__)}
    assert {"plan", "scene", "sprites", "render", "audio", "annotations", "generate"} <= names
    assert importlib.util.find_spec("egodistill.data.synth") is None
    for name in names:
        path = Path(synth.__path__[0]) / f"{name}.py"
        tree = ast.parse(path.read_text())
        long = {n.name: n.end_lineno - n.lineno + 1 for n in ast.walk(tree)
                if isinstance(n, ast.FunctionDef) and n.end_lineno - n.lineno + 1 > 60}
        assert not long, (name, long)
        assert len(path.read_text().splitlines()) < 300, name
