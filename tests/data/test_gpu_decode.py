"""data.decode=gpu: JPEGs decoded, cropped, resized and flipped on the device, and audio
spectrograms made there from the waveforms, give the CPU loader's clips (run here with
device="cpu" and torchvision's CPU decoder; CUDA when present)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from egodistill.config import Config, ConfigError
from egodistill.data.dataset import build_dataset, build_loader, collate
from egodistill.data.gpu_decode import JpegClips, check_decode, crop_resize_flip, decode_clips
from egodistill.data.modalities.audio import MelClips
from egodistill.data.loaders import make_loader
from egodistill.data.views import ViewParams, crop_resize
from egodistill.engine.inputs import model_input, to_device

MODS = ["rgb", "flow", "audio"]


def _configs(cfg: Config) -> tuple[Config, Config]:
    cfg.data.num_frames, cfg.data.stride, cfg.data.size, cfg.data.color_jitter = 4, 2, 32, 0.0
    cfg.train.seed = 5
    gpu = copy.deepcopy(cfg)
    gpu.data.decode = "gpu"
    return cfg, gpu


def _batches(cfg: Config, gpu: Config, epoch: int, train: bool = True):
    cpu_ds = build_dataset(cfg, "train", train=train, modalities=MODS)
    gpu_ds = build_dataset(gpu, "train", train=train, modalities=MODS)
    cpu_ds.set_epoch(epoch), gpu_ds.set_epoch(epoch)
    idx = list(range(min(4, len(cpu_ds))))
    return collate(cpu_ds.__getitems__(idx)), collate(gpu_ds.__getitems__(idx))


def _assert_close(got: torch.Tensor, want: torch.Tensor, max_diff: int, max_frac: float) -> None:
    """uint8 clips equal up to `max_diff` levels, on at most `max_frac` of the values."""
    assert got.shape == want.shape and got.dtype == want.dtype == torch.uint8
    diff = (got.cpu().int() - want.int()).abs()
    assert int(diff.max()) <= max_diff
    assert float((diff > 0).float().mean()) <= max_frac


def _layout(x: torch.Tensor) -> list[int]:
    """The strides of the dimensions that have more than one element (the memory layout)."""
    return [st for n, st in zip(x.shape, x.stride()) if n > 1]


@pytest.mark.parametrize("train", [True, False])
def test_device_path_gives_the_cpu_loaders_clips(synth_config, train):
    cfg, gpu = _configs(synth_config)
    flips = set()
    for epoch in range(3):
        want, got = _batches(cfg, gpu, epoch, train)
        assert isinstance(got["rgb"], JpegClips) and isinstance(got["flow"], JpegClips)
        assert isinstance(got["audio"], MelClips) and torch.equal(got["views"], want["views"])
        audio = got["audio"].decode("cpu")
        assert audio.shape == want["audio"].shape and _layout(audio) == _layout(want["audio"])
        torch.testing.assert_close(audio, want["audio"], rtol=0, atol=1e-4)
        for name in ("rgb", "flow"):
            # Same decoder (libjpeg-turbo in both OpenCV and torchvision), OpenCV's fixed-point
            # resize emulated: a rounding step apart on a few values.
            _assert_close(decode_clips(got[name], "cpu"), want[name], max_diff=1, max_frac=0.01)
        flips.update(bool(f) for f in got["flow"].flips)
    assert flips == ({True, False} if train else {False})  # mirrored flow (u -> 255 - u) was covered


def test_audio_augmentation_is_drawn_in_the_loader_and_applied_on_the_device(synth_config):
    cfg, gpu = _configs(synth_config)
    for c in (cfg, gpu):
        c.data.audio.time_stretch, c.data.audio.freq_mask, c.data.audio.time_mask = 0.2, 20, 30
    want, got = _batches(cfg, gpu, epoch=1)
    audio = got["audio"].decode("cpu")
    torch.testing.assert_close(audio, want["audio"], rtol=0, atol=1e-4)
    assert bool(got["audio"].row_mask.any()) and bool(got["audio"].col_mask.any())
    assert bool((audio == 0).any())  # masked values are the normalised mean


def test_audio_clips_of_other_sample_rates_get_their_own_filterbank(synth_config):
    _, gpu = _configs(synth_config)
    ds = build_dataset(gpu, "train", train=True, modalities=["audio"])
    a, b = (ds.get(i)["audio"] for i in (0, 1))
    true_rate = b.decode("cpu")
    b.rates = b.rates * 2  # as if recorded at twice the rate: its frames read another filterbank
    both = MelClips.stack([a, b]).decode("cpu")
    torch.testing.assert_close(both[0], a.decode("cpu"))
    torch.testing.assert_close(both[1], b.decode("cpu"))
    assert not torch.allclose(both[1], true_rate)


def test_sub_pixel_boxes_are_sampled_as_warp_affine():
    # A modality stored at another resolution than RGB gets the view's box off its pixel grid.
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 50, 90, 3), dtype=np.uint8)
    for crop in [(0.1037, 0.0511, 0.6213, 0.9723), (0.0, 0.0, 0.56, 1.0)]:
        for flip in (False, True):
            view = ViewParams(np.arange(2), 1.0, crop, flip, 0)
            want = torch.from_numpy(crop_resize(list(frames), view, 40))  # [T, S, S, 3]
            got = crop_resize_flip(torch.from_numpy(frames).permute(0, 3, 1, 2), crop, flip, 40).permute(0, 2, 3, 1)
            _assert_close(got, want, max_diff=1, max_frac=0.3)


def test_jpeg_batches_cross_worker_processes_and_decode_in_to_device(synth_config):
    cfg, gpu = _configs(synth_config)
    gpu.train.workers = 2
    ds = build_dataset(gpu, "train", train=True, modalities=MODS)
    loader = make_loader("shared", ds, batch_size=2, sampler=None, workers=2, collate_fn=collate, pin_memory=False)
    batch = next(iter(loader))
    want = collate(ds.__getitems__([0, 1]))
    on_device = to_device(batch, "cpu")
    assert torch.equal(on_device["rgb"], decode_clips(want["rgb"], "cpu"))
    assert torch.equal(on_device["audio"], want["audio"].decode("cpu"))
    x = model_input(on_device, gpu.model)  # normalised as the CPU path's uint8 frames are
    assert x.dtype == torch.float32 and x.shape == (2, 4, 3, 32, 32)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_gpu_decode_without_cuda_is_a_config_error(synth_config):
    _, gpu = _configs(synth_config)
    ds = build_dataset(gpu, "train", train=True, modalities=["rgb"])
    with pytest.raises(ConfigError, match="data.decode=gpu .* set data.decode=cpu"):
        build_loader(ds, gpu, train=True)


def test_gpu_decode_refuses_colour_jitter(synth_config, monkeypatch):
    _, gpu = _configs(synth_config)
    gpu.data.color_jitter = 0.3
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ConfigError, match="colour-jitter"):
        check_decode(gpu)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_decode_matches_the_cpu_loader_to_decoder_tolerance(synth_config):
    cfg, gpu = _configs(synth_config)
    for epoch in range(2):
        want, got = _batches(cfg, gpu, epoch)
        audio = got["audio"].decode("cuda")
        assert audio.device.type == "cuda"
        torch.testing.assert_close(audio.cpu(), want["audio"], rtol=0, atol=1e-3)  # cuFFT's rounding
        for name in ("rgb", "flow"):
            out = decode_clips(got[name], "cuda")
            assert out.device.type == "cuda"
            # nvJPEG's IDCT and chroma upsampling are not libjpeg-turbo's: a few levels on some pixels.
            _assert_close(out, want[name], max_diff=4, max_frac=0.5)
            assert float((out.cpu().float() - want[name].float()).abs().mean()) < 0.5
