"""Modality loaders on small in-memory stores that follow the store contract
(docs/architecture.md): frame numbering, flow mapping and flip, cross-modality alignment under
random views, audio equal to the plain log-mel definition, layout boxes, fewer-frame students."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from egodistill.config import AudioConfig, Config, DataConfig
from egodistill.data.audio import log_mel
from egodistill.data.modalities import MODALITIES, Segment, empty_stack_like
from egodistill.data.modalities.audio import AudioModality, nearest_columns, segment_starts, spectrogram_video
from egodistill.data.modalities.flow import flow_numbers
from egodistill.data.records import Sample
from egodistill.data.views import IMAGENET_MEAN, IMAGENET_STD, ViewParams, draw_train_view

H, W, S = 48, 80, 32


def _jpeg(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", img if img.ndim == 2 else img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert ok
    return buf.tobytes()


class FakeRGB:
    path = "fake/rgb.h5"

    def __init__(self, frames: dict[str, list[np.ndarray]], first: int = 1, fps: float = 30.0):
        self.blobs = {v: [_jpeg(f) for f in fs] for v, fs in frames.items()}
        self.first, self._fps = first, fps
        self.reads: list[list[int]] = []

    def video_ids(self):
        return list(self.blobs)

    def num_frames(self, v):
        return len(self.blobs[v])

    def first_frame(self, v):
        return self.first

    def fps(self, v):
        return self._fps

    def read_frames(self, v, numbers, segment_id=None):
        self.reads.append(list(numbers))
        out = []
        for n in numbers:
            if v not in self.blobs or not 0 <= n - self.first < len(self.blobs[v]):
                raise KeyError(f"{self.path}: video {v} has no frame {n}")
            out.append(self.blobs[v][n - self.first])
        return out


class FakeFlow:
    path = "fake/flow.h5"

    def __init__(self, u: dict[str, list[np.ndarray]], v: dict[str, list[np.ndarray]], stride: int = 2, first: int = 1):
        self.u = {k: [_jpeg(f) for f in fs] for k, fs in u.items()}
        self.v = {k: [_jpeg(f) for f in fs] for k, fs in v.items()}
        self._stride, self.first = stride, first

    def num_frames(self, vid):
        return len(self.u[vid])

    def first_frame(self, vid):
        return self.first

    def stride(self, vid):
        return self._stride

    def read_frames(self, vid, numbers, segment_id=None):
        return [self.u[vid][n - self.first] for n in numbers], [self.v[vid][n - self.first] for n in numbers]


class FakeAudio:
    path = "fake/audio.h5"

    def __init__(self, wave: np.ndarray, sr: int):
        self.wave, self.sr = wave.astype(np.float32), sr

    def sample_rate(self, vid):
        return self.sr

    def num_samples(self, vid):
        return len(self.wave)

    def read(self, vid, start, stop):
        out = np.zeros(stop - start, np.float32)
        lo, hi = max(start, 0), min(stop, len(self.wave))
        if hi > lo:
            out[lo - start : hi - start] = self.wave[lo:hi]
        return out


class FakeLayout:
    path = "fake/layout.h5"

    def __init__(self, arrays: dict[str, np.ndarray], first: int = 1):
        self.arrays, self.first = arrays, first

    def read(self, vid, numbers, segment_id=None):
        idx = np.asarray(numbers) - self.first
        return {k: a[idx] for k, a in self.arrays.items()}


def _cfg(**data) -> Config:
    base = dict(num_frames=4, stride=2, size=S, scale_range=[1.0, 1.4])
    base.update(data)
    return Config(data=DataConfig(**base))


def _segment(n=20, start=1, first=1, fps=30.0) -> Segment:
    return Segment("v1", start, n, first, fps, (H, W))


SAMPLE = Sample("s1", "v1", 1, 20, {"verb": 1})
WHOLE = ViewParams(np.array([0, 1, 2, 3]), 1.0, (0.0, 0.0, 1.0, 1.0), False, 0)


def _load_normalized(name, *args, **kwargs):
    """What a model reads: the loader's output through the modality's `normalize` (model_input)."""
    return MODALITIES[name].normalize(MODALITIES[name].load(*args, **kwargs))


@pytest.mark.parametrize("flip", [False, True])
def test_uint8_frames_normalised_on_the_device_equal_the_loaders_float_path(flip):
    rng = np.random.default_rng(0)
    rgb_store = FakeRGB({"v1": [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(20)]})
    flow_store = FakeFlow({"v1": [rng.integers(0, 256, (H, W), dtype=np.uint8) for _ in range(10)]},
                          {"v1": [rng.integers(0, 256, (H, W), dtype=np.uint8) for _ in range(10)]})
    view = ViewParams(np.array([0, 2, 4, 4]), 1.2, (0.1, 0.05, 0.8, 0.9), flip, 0)
    for name, store in (("rgb", rgb_store), ("flow", flow_store)):
        as_uint8 = MODALITIES[name].load(store, SAMPLE, view, _cfg(), True, segment=_segment())
        as_float = MODALITIES[name].load(store, SAMPLE, view, _cfg(uint8_frames=False), True, segment=_segment())
        assert as_uint8.dtype == torch.uint8 and as_float.dtype == torch.float32
        torch.testing.assert_close(MODALITIES[name].normalize(as_uint8), as_float, atol=1e-5, rtol=0)
        assert MODALITIES[name].normalize(as_float) is as_float  # float input passes through
        # Given a slot of a batch buffer laid out like its output, the loader writes there.
        slot = empty_stack_like(as_uint8, 2)[1]
        written = MODALITIES[name].load(store, SAMPLE, view, _cfg(), True, segment=_segment(), out=slot)
        assert written.data_ptr() == slot.data_ptr() and torch.equal(slot, as_uint8)
        # A slot of another layout is ignored, not written wrongly.
        other = torch.zeros_like(as_uint8, memory_format=torch.contiguous_format if name == "rgb" else torch.channels_last)
        assert torch.equal(MODALITIES[name].load(store, SAMPLE, view, _cfg(), True, segment=_segment(), out=other), as_uint8)
        assert not other.any()


def test_rgb_reads_the_view_frames_once_each_and_normalises():
    # Frame number k is a flat grey of level 10*k: the output tells which frame was read.
    frames = [np.full((H, W, 3), 10 * k, np.uint8) for k in range(1, 21)]
    store = FakeRGB({"v1": frames})
    view = ViewParams(np.array([0, 3, 3, 9]), 1.0, (0.0, 0.0, H / W, 1.0), False, 0)
    raw = MODALITIES["rgb"].load(store, SAMPLE, view, _cfg(), False, segment=_segment(start=5))
    assert raw.shape == (4, 3, S, S) and raw.dtype == torch.uint8  # normalised on the device
    x = MODALITIES["rgb"].normalize(raw)
    assert x.dtype == torch.float32
    assert store.reads[-1] == [5, 8, 14]  # frame 8 read once although the view uses it twice
    levels = torch.tensor([10 * (5 + o) for o in (0, 3, 3, 9)], dtype=torch.float32) / 255
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    expected = (levels[:, None] - mean[None]) / std[None]  # [T, 3]
    torch.testing.assert_close(x.mean(dim=(2, 3)), expected, atol=0.02, rtol=0)
    with pytest.raises(KeyError, match="video v1 has no frame 21"):
        _load_normalized("rgb", store, SAMPLE, view, _cfg(), False, segment=_segment(start=12))


def test_rgb_colour_jitter_only_in_training_and_seeded():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(20)]
    store = FakeRGB({"v1": frames})
    cfg = _cfg(color_jitter=0.4)
    load = lambda v, train: _load_normalized("rgb", store, SAMPLE, v, cfg, train, segment=_segment())  # noqa: E731
    plain = load(WHOLE, False)
    a = load(ViewParams(WHOLE.frames, 1.0, WHOLE.crop, False, 5), True)
    assert not torch.allclose(a, plain)
    assert torch.equal(a, load(ViewParams(WHOLE.frames, 1.0, WHOLE.crop, False, 5), True))
    assert not torch.equal(a, load(ViewParams(WHOLE.frames, 1.0, WHOLE.crop, False, 6), True))
    # With jitter off, a training view loads exactly like a test view.
    off = _load_normalized("rgb", store, SAMPLE, ViewParams(WHOLE.frames, 1.0, WHOLE.crop, False, 5), _cfg(), True,
                                 segment=_segment())
    assert torch.equal(off, plain)


def test_flow_frame_mapping_is_epic_ceil_half_clamped():
    assert flow_numbers(np.arange(1, 8), 1, 1, 2, 100).tolist() == [1, 1, 2, 2, 3, 3, 4]
    assert flow_numbers(np.array([1, 7, 50]), 1, 1, 2, 10).tolist() == [1, 4, 10]  # clamped to the store
    assert flow_numbers(np.array([0, 1, 2, 3]), 0, 0, 2, 10).tolist() == [0, 0, 1, 1]  # 0-based stores


def _uv(u_val: int, v_val: int, n: int = 10):
    u = [np.full((H, W), u_val, np.uint8) for _ in range(n)]
    v = [np.full((H, W), v_val, np.uint8) for _ in range(n)]
    return FakeFlow({"v1": u}, {"v1": v})


def _norm(value: float, c: int) -> float:
    return (value / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]


@pytest.mark.parametrize("channels", [2, 3])
def test_rightward_flow_reads_leftward_after_a_flip(channels):
    store = _uv(200, 100)  # u > 128: moving right; v < 128: moving up
    cfg = _cfg(flow_channels=channels)
    plain = _load_normalized("flow", store, SAMPLE, WHOLE, cfg, True, segment=_segment())
    flipped = _load_normalized("flow", store, SAMPLE, ViewParams(WHOLE.frames, 1.0, WHOLE.crop, True, 0), cfg, True,
                                      segment=_segment())
    assert plain.shape == (4, channels, S, S) and MODALITIES["flow"].channels(cfg) == channels
    assert torch.allclose(plain[:, 0], torch.tensor(_norm(200, 0)), atol=1e-5)
    assert torch.allclose(flipped[:, 0], torch.tensor(_norm(55, 0)), atol=1e-5)  # 255 - 200: moving left
    assert torch.allclose(flipped[:, 1], plain[:, 1]) and torch.allclose(plain[:, 1], torch.tensor(_norm(100, 1)), atol=1e-5)
    if channels == 3:
        assert torch.allclose(plain[:, 2], torch.tensor(_norm(0, 2)), atol=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_square_in_rgb_motion_in_flow_and_its_box_stay_together_under_random_views(seed):
    # An object (bright in RGB, moving right in flow, with a detection box) at a fixed place.
    x0, y0, bw, bh = 30, 14, 20, 16
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[y0 : y0 + bh, x0 : x0 + bw] = 255
    u = np.full((H, W), 128, np.uint8)
    u[y0 : y0 + bh, x0 : x0 + bw] = 228
    stores = {
        "rgb": FakeRGB({"v1": [rgb] * 20}),
        "flow": FakeFlow({"v1": [u] * 10}, {"v1": [np.full((H, W), 128, np.uint8)] * 10}),
        "layout": FakeLayout({
            "boxes": np.tile(np.array([[x0 / W, y0 / H, (x0 + bw) / W, (y0 + bh) / H]], np.float32), (20, 1, 1)),
            "category": np.full((20, 1), 2), "score": np.ones((20, 1), np.float32),
            "side": np.full((20, 1), 2), "state": np.full((20, 1), 5), "valid": np.ones((20, 1), bool)}),
    }
    cfg = _cfg()
    rng = np.random.default_rng(seed)
    for _ in range(5):
        view = draw_train_view(20, cfg.data, rng, (H, W))
        out = {m: _load_normalized(m, stores[m], SAMPLE, view, cfg, True, segment=_segment()) for m in stores}
        # Fraction of the object in each output pixel, read from each modality.
        rgb_frac = out["rgb"][0, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]  # [S, S], 0 background, 1 object
        flow_frac = (out["flow"][0, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]) * 255 / 100 - 128 / 100  # (u - 128) / 100
        sign = -1 if view.flip else 1
        assert (rgb_frac - sign * flow_frac).abs().max() < 0.05  # same pixels, flow reads leftward when flipped
        bright = rgb_frac > 0.5
        box = out["layout"]["boxes"][0, 0] * S
        if not out["layout"]["mask"][0, 0]:
            assert not bright.any()
            continue
        ys, xs = torch.nonzero(bright, as_tuple=True)
        assert xs.min() >= box[0] - 1 and xs.max() <= box[2] and ys.min() >= box[1] - 1 and ys.max() <= box[3]
        inner = torch.zeros_like(bright)
        inner[int(box[1]) + 2 : int(box[3]) - 1, int(box[0]) + 2 : int(box[2]) - 1] = True
        assert bright[inner].all()
        assert (sign * flow_frac[bright] > 0.5).all()


def test_layout_view_moves_boxes_swaps_hands_on_flip_and_pads():
    arrays = {
        "boxes": np.array([[[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0, 0, 0, 0]]] * 4, np.float32),
        "category": np.array([[1, 2, 0]] * 4), "score": np.array([[0.9, 0.8, 0.0]] * 4, np.float32),
        "side": np.array([[0, 2, 2]] * 4), "state": np.array([[3, 5, 5]] * 4), "valid": np.array([[True, True, False]] * 4),
    }
    store = FakeLayout(arrays)
    cfg = _cfg(max_boxes=5)
    flip = ViewParams(WHOLE.frames, 1.0, WHOLE.crop, True, 0)
    out = MODALITIES["layout"].load(store, SAMPLE, flip, cfg, True, segment=_segment())
    assert set(out) == {"boxes", "category", "score", "side", "state", "mask"}
    assert out["boxes"].shape == (4, 5, 4) and out["mask"].shape == (4, 5)
    torch.testing.assert_close(out["boxes"][0, :2], torch.tensor([[0.5, 0.0, 1.0, 0.5], [0.0, 0.5, 0.5, 1.0]]))
    assert out["side"][0].tolist() == [1, 2, 2, 2, 2]  # left hand reads as right hand
    assert out["category"][0].tolist() == [1, 2, 0, 0, 0] and out["mask"][0].tolist() == [True, True, False, False, False]
    # A crop that leaves the second box out masks it and resets it to padding.
    crop = ViewParams(WHOLE.frames, 2.0, (0.0, 0.0, 0.5, 0.5), False, 0)
    out = MODALITIES["layout"].load(store, SAMPLE, crop, _cfg(max_boxes=2), True, segment=_segment())
    assert out["mask"][0].tolist() == [True, False] and out["category"][0].tolist() == [1, 0]
    torch.testing.assert_close(out["boxes"][0, 0], torch.tensor([0.0, 0.0, 1.0, 1.0]))


def _naive_audio(wave: np.ndarray, sr: int, frames: np.ndarray, fps: float, acfg: AudioConfig, size: int) -> torch.Tensor:
    """The definition, step by step: zero-padded segment, full log-mel, nearest resize, normalise, 3 channels."""
    length = int(round(acfg.segment_seconds * sr))
    out = []
    for f in frames:
        centre = int(round((f - 1) / fps * sr))
        seg = np.zeros(length, np.float32)
        for i in range(length):
            j = centre - length // 2 + i
            if 0 <= j < len(wave):
                seg[i] = wave[j]
        spec = log_mel(torch.from_numpy(seg), sr, acfg)
        x = F.interpolate(spec[None, None], size=(size, size), mode="nearest")[0]
        out.append(((x - acfg.mean) / acfg.std).expand(3, size, size))
    return torch.stack(out)


@pytest.mark.parametrize("n_mels", [24, 32, 48])  # fewer bands than S (rows repeated on the device), as many, more
def test_audio_equals_the_plain_definition_with_zero_padding_at_the_edges(n_mels):
    sr, fps = 8000, 25.0
    acfg = AudioConfig(segment_seconds=0.3, n_fft=256, win_length=64, hop_length=32, n_mels=n_mels)
    t = np.arange(int(2.0 * sr)) / sr
    wave = (0.5 * np.sin(2 * np.pi * 700 * t) * (t > 1.0) + 0.01 * np.random.default_rng(0).standard_normal(len(t)))
    store = FakeAudio(wave, sr)
    cfg = Config(data=DataConfig(size=S, audio=acfg))
    view = ViewParams(np.array([0, 10, 30, 49]), 1.0, (0.0, 0.0, 1.0, 1.0), True, 0)  # flip has no effect on audio
    raw = MODALITIES["audio"].load(store, SAMPLE, view, cfg, False, segment=Segment("v1", 1, 50, 1, fps, (H, W)))
    slot = empty_stack_like(raw, 3)[2]
    written = MODALITIES["audio"].load(store, SAMPLE, view, cfg, False, segment=Segment("v1", 1, 50, 1, fps, (H, W)), out=slot)
    assert written.data_ptr() == slot.data_ptr() and torch.equal(slot, raw)  # written in place
    assert raw.shape == (4, 1, min(n_mels, S), S)  # one channel of mel-band rows in the batch
    x = MODALITIES["audio"].normalize(raw)  # the model's three, as model_input gives them
    ref = _naive_audio(wave, sr, 1 + view.frames, fps, acfg, S)
    assert x.shape == (4, 3, S, S)
    torch.testing.assert_close(x, ref, atol=2e-4, rtol=0)
    # The tone starts at 1.0 s: the segment at 1.2 s has far more 700 Hz energy than the one at 0.4 s.
    assert x[2].mean() > x[1].mean() + 0.5


def test_audio_segments_are_centred_on_frame_times():
    assert segment_starts(np.array([1, 2, 26]), 1, 25.0, 8000, 100).tolist() == [-50, 320 - 50, 8000 - 50]
    assert nearest_columns(10, 4).tolist() == [0, 2, 5, 7]


@pytest.mark.parametrize("n_mels", [24, 48])  # fewer bands than S (band rows shipped), more (S rows)
def test_audio_training_masks_are_seeded_by_the_view_and_set_to_the_mean(n_mels):
    sr = 8000
    acfg = AudioConfig(segment_seconds=0.3, n_fft=256, win_length=64, hop_length=32, n_mels=n_mels, time_mask=10,
                       freq_mask=8, time_stretch=0.2)
    wave = torch.randn(6000)
    starts = np.array([0, 1000, 2000])
    length = int(0.3 * sr)
    plain = spectrogram_video(wave, starts, length, sr, acfg, S)
    a = spectrogram_video(wave, starts, length, sr, acfg, S, np.random.default_rng(1))
    b = spectrogram_video(wave, starts, length, sr, acfg, S, np.random.default_rng(1))
    assert torch.equal(a, b) and not torch.equal(a, plain)
    assert (a == 0).any() and not (plain == 0).any()
    # A frequency mask silences whole mel bands: after the device's row resize, every output row
    # that reads a masked band is zero, and the unmasked rows are untouched.
    no_stretch = AudioConfig(**{**acfg.__dict__, "time_mask": 0, "time_stretch": 0.0})
    full = AudioModality().normalize(spectrogram_video(wave, starts, length, sr, no_stretch, S))[:, 0]  # [T, S, S]
    masked = AudioModality().normalize(spectrogram_video(wave, starts, length, sr, no_stretch, S, np.random.default_rng(1)))[:, 0]
    band = torch.from_numpy(nearest_columns(acfg.n_mels, S))  # band of each output row
    rng = np.random.default_rng(1)  # replay the draws: per segment, width w then first band f0
    drawn = 0
    for i in range(len(starts)):
        w = int(rng.integers(0, acfg.freq_mask + 1))
        f0 = int(rng.integers(0, acfg.n_mels - w + 1))
        expected = (band >= f0) & (band < f0 + w)  # the rows that read a masked band
        assert torch.equal((masked[i] == 0).all(1), expected)
        torch.testing.assert_close(masked[i][~expected], full[i][~expected], atol=0, rtol=0)
        drawn += int(expected.any())
    assert drawn > 0
    # Through the modality: the same view gives the same input, as a replayed cached view must.
    cfg = Config(data=DataConfig(size=S, audio=acfg))
    store = FakeAudio(wave.numpy(), sr)
    view = ViewParams(np.array([0, 5]), 1.0, (0.0, 0.0, 1.0, 1.0), False, 42)
    seg = Segment("v1", 1, 50, 1, 25.0, (H, W))
    load = lambda v: MODALITIES["audio"].load(store, SAMPLE, v, cfg, True, segment=seg)  # noqa: E731
    assert torch.equal(load(view), load(view))
    assert not torch.equal(load(view), load(ViewParams(view.frames, 1.0, view.crop, False, 43)))


def test_student_with_fewer_frames_reads_a_fixed_subsample_of_the_teachers_view():
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(40)]
    store = FakeRGB({"v1": frames})
    cfg = _cfg(num_frames=16, stride=2)
    seg = Segment("v1", 1, 40, 1, 30.0, (H, W))
    teacher_view = draw_train_view(40, cfg.data, rng, (H, W))
    teacher = _load_normalized("rgb", store, SAMPLE, teacher_view, cfg, True, segment=seg)
    student = _load_normalized("rgb", store, SAMPLE, teacher_view.subsample(2), cfg, True, segment=seg)
    assert student.shape[0] == 8
    assert torch.equal(student, teacher[::2])


def test_stack_keep_layout_equals_stack_and_keeps_each_items_memory_order():
    from egodistill.data.modalities import stack_keep_layout

    frames = [torch.randint(0, 256, (4, 6, 6, 3), dtype=torch.uint8) for _ in range(3)]  # [T, S, S, C] as decoded
    views = [f.permute(0, 3, 1, 2) for f in frames]  # [T, C, S, S] channels-first views, as the RGB loader returns
    out = stack_keep_layout(views)
    assert torch.equal(out, torch.stack(views))
    assert out.permute(0, 1, 3, 4, 2).is_contiguous()  # channels-last memory: one memcpy per item
    x = MODALITIES["rgb"].normalize(out)
    assert x.is_contiguous() and torch.allclose(x, MODALITIES["rgb"].normalize(torch.stack(views)))
    plain = [torch.randn(2, 3) for _ in range(2)]
    assert stack_keep_layout(plain).is_contiguous() and torch.equal(stack_keep_layout(plain), torch.stack(plain))
    # The consecutive slices of one buffer come back as that buffer; any other order is copied.
    buffer = torch.randn(3, 4, 5).permute(0, 2, 1)
    slices = [buffer[i] for i in range(3)]
    assert stack_keep_layout(slices).data_ptr() == buffer.data_ptr() and torch.equal(stack_keep_layout(slices), buffer)
    for order in ([2, 1, 0], [0, 2], [0, 0, 1]):
        got = stack_keep_layout([buffer[i] for i in order])
        assert torch.equal(got, buffer[order])
        got.add_(1.0)  # a copy: the buffer is untouched
        assert not torch.equal(got, buffer[order])
    halves = torch.randn(4, 6)[:, :3]  # slices with gaps between them: copied
    assert torch.equal(stack_keep_layout([halves[i] for i in range(4)]), halves)
    b = torch.arange(12.0)
    # At consecutive offsets of one storage, yet not equal slices: each is copied as it reads.
    for odd in ([b[0:6].view(2, 3), b[6:8].view(2, 1).expand(2, 3)],  # expanded, shorter
                [b[0:6].view(2, 3), b[6:12].view(3, 2).t()],  # transposed
                [b[0:6:2], b[3:9:2]]):  # strided: the slots would overlap
        got = stack_keep_layout(odd)
        assert torch.equal(got, torch.stack(odd)) and got.data_ptr() != b.data_ptr()
    c = torch.arange(6.0) * (1 + 1j)
    lazy = [c[0:3], c[3:6].conj()]  # a lazily conjugated view reads other values than its memory
    assert torch.equal(stack_keep_layout(lazy), torch.stack(lazy))
