"""`prepare video` / `prepare audio` on tiny files encoded here with PyAV."""
from __future__ import annotations

import wave

import av
import cv2
import numpy as np
import pytest

from egodistill import cli
from egodistill.data.prepare.video import decode_video, prepare_audio, prepare_video, resized_size
from egodistill.data.stores import AudioStore, RGBStore

FPS, SR = 10, 16000


def _make_video(path, n: int = 12, h: int = 48, w: int = 64, audio: bool = True, codec: str = "mpeg4",
                audio_codec: str = "pcm_s16le") -> np.ndarray | None:
    """Write frames of grey level 20*i and (optionally) a 250 Hz sine of amplitude 0.5; return the sine."""
    c = av.open(str(path), "w")
    vs = c.add_stream(codec, rate=FPS)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    sine = None
    if audio:
        a = c.add_stream(audio_codec, rate=SR)
        a.layout = "mono"
    for i in range(n):
        for p in vs.encode(av.VideoFrame.from_ndarray(np.full((h, w, 3), 20 * i, np.uint8), format="rgb24")):
            c.mux(p)
    for p in vs.encode():
        c.mux(p)
    if audio:
        t = np.arange(int(n / FPS * SR)) / SR
        sine = (0.5 * np.sin(2 * np.pi * 250 * t)).astype(np.float32)
        pcm = (sine * 32767).astype(np.int16)[None] if audio_codec == "pcm_s16le" else sine[None]
        frame = av.AudioFrame.from_ndarray(pcm, format="s16" if audio_codec == "pcm_s16le" else "fltp", layout="mono")
        frame.sample_rate = SR
        for p in a.encode(frame):
            c.mux(p)
        for p in a.encode():
            c.mux(p)
    c.close()
    return sine


def _means(blobs) -> list[int]:
    return [int(round(cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_GRAYSCALE).mean())) for b in blobs]


def test_resized_size_keeps_aspect_and_never_upscales():
    assert resized_size(1080, 1920, 256) == (256, 455)
    assert resized_size(1920, 1080, 256) == (455, 256)
    assert resized_size(100, 200, 256) == (100, 200)
    assert resized_size(1080, 1920, 0) == (1080, 1920)


def test_video_to_rgb_and_audio_round_trip(tmp_path):
    sine = _make_video(tmp_path / "P01_01.mkv")
    rgb, aud = tmp_path / "rgb.h5", tmp_path / "audio.h5"
    s = prepare_video([tmp_path / "P01_01.mkv"], rgb, aud, short_side=24, sample_rate=8000, show_progress=False)
    assert (s.videos, s.frames) == (1, 12) and s.samples > 0
    store = RGBStore(rgb)
    assert (store.num_frames("P01_01"), store.first_frame("P01_01"), store.fps("P01_01")) == (12, 1, 10.0)
    assert store.frame_size("P01_01") == (24, 32)
    frames = store.read_frames("P01_01", list(range(1, 13)))
    assert _means(frames) == pytest.approx([20 * i for i in range(12)], abs=3)
    a = AudioStore(aud)
    assert a.sample_rate("P01_01") == 8000
    assert abs(a.num_samples("P01_01") - 9600) <= 64  # 1.2 s at 8 kHz
    got = a.read("P01_01", 1000, 9000)
    ref = sine[::2][1000:9000]  # 250 Hz survives 16k -> 8k; compare amplitude and correlation
    assert np.sqrt((got ** 2).mean()) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)
    assert np.corrcoef(got, ref)[0, 1] > 0.95


def test_fps_resampling_repeats_or_drops_frames(tmp_path):
    _make_video(tmp_path / "v.mkv", audio=False)
    half = decode_video(tmp_path / "v.mkv", fps=5, want_audio=False)
    assert half["fps"] == 5.0 and _means(half["jpegs"]) == pytest.approx([0, 40, 80, 120, 160, 200], abs=3)
    double = decode_video(tmp_path / "v.mkv", fps=20, want_audio=False)
    assert _means(double["jpegs"]) == pytest.approx([20 * (i // 2) for i in range(24)], abs=3)


def test_video_without_audio_is_reported_or_stored_silent(tmp_path):
    _make_video(tmp_path / "mute.mp4", audio=False)
    rgb, aud = tmp_path / "rgb.h5", tmp_path / "audio.h5"
    with pytest.raises(ValueError, match=r"mute\.mp4: video mute has no audio stream.*--allow-silent"):
        prepare_video([tmp_path / "mute.mp4"], rgb, aud, show_progress=False)
    assert not rgb.exists() and not aud.exists()
    s = prepare_video([tmp_path / "mute.mp4"], rgb, aud, allow_silent=True, sample_rate=8000, show_progress=False)
    assert any("no audio stream, stored silence" in w for w in s.warnings)
    a = AudioStore(aud)
    assert a.num_samples("mute") == 9600 and not a.read("mute", 0, 9600).any()
    assert RGBStore(rgb).num_frames("mute") == 12


def test_unreadable_video_fails_naming_file_and_keeps_outputs(tmp_path):
    _make_video(tmp_path / "good.mkv", n=4)
    rgb, aud = tmp_path / "rgb.h5", tmp_path / "audio.h5"
    prepare_video([tmp_path / "good.mkv"], rgb, aud, show_progress=False)
    before = (rgb.read_bytes(), aud.read_bytes())
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    with pytest.raises(ValueError, match=r"broken\.mp4"):
        prepare_video([tmp_path / "good.mkv", tmp_path / "broken.mp4"], rgb, aud, show_progress=False)
    assert (rgb.read_bytes(), aud.read_bytes()) == before
    again = prepare_video([tmp_path / "good.mkv"], rgb, aud, show_progress=False)
    assert (again.videos, again.skipped) == (0, 1)


def test_prepare_audio_from_wav_and_cli(tmp_path, capsys):
    t = np.arange(16000) / 16000
    pcm = (0.25 * np.sin(2 * np.pi * 100 * t) * 32767).astype(np.int16)
    with wave.open(str(tmp_path / "P01_01.wav"), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes(pcm.tobytes())
    s = prepare_audio([tmp_path / "P01_01.wav"], tmp_path / "audio.h5", sample_rate=16000, show_progress=False)
    assert (s.videos, s.samples) == (1, 16000)
    got = AudioStore(tmp_path / "audio.h5").read("P01_01", 0, 16000)
    np.testing.assert_allclose(got, pcm / 32768.0, atol=1e-6)  # same rate: exact
    assert cli.main(["prepare", "audio", str(tmp_path), str(tmp_path / "a8k.h5"), "--sample-rate", "8000", "--quiet"]) == 0
    assert "prepare audio: 1 videos (0 skipped)" in capsys.readouterr().out
    a8 = AudioStore(tmp_path / "a8k.h5")
    assert a8.sample_rate("P01_01") == 8000 and abs(a8.num_samples("P01_01") - 8000) <= 32
    (tmp_path / "x.wav").write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(ValueError, match=r"x\.wav"):
        prepare_audio([tmp_path / "x.wav"], tmp_path / "bad.h5", show_progress=False)
