"""Log-mel spectrograms: filterbank known values, a pure tone's band, an independent numpy STFT,
and the shared-frame fast path equal to the plain definition."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from egodistill.config import AudioConfig
from egodistill.data.audio import hz_to_mel, log_mel, log_mel_segments, mel_filterbank, mel_to_hz, to_db


def test_filterbank_known_values_by_hand():
    # 5 bins at 0, 1000, 2000, 3000, 4000 Hz; one band from 0 to 4000 Hz. Its centre is half way
    # in mels: 700 * (sqrt(1 + 4000/700) - 1) = 1113.84 Hz.
    fb = mel_filterbank(5, 0.0, 4000.0, 1, 8000)
    centre = 700 * (math.sqrt(1 + 4000 / 700) - 1)
    expected = [0.0, 1000 / centre, 2000 / (4000 - centre), 1000 / (4000 - centre), 0.0]
    assert fb.shape == (5, 1)
    assert torch.allclose(fb[:, 0], torch.tensor(expected), atol=1e-5)
    assert abs(centre - 1113.836) < 0.001


def test_filterbank_rows_are_triangles_peaking_at_one_at_htk_centres():
    n_mels, sr = 8, 16000
    # A fine grid of bins so every band's peak lands near a bin.
    n_freqs = 8001  # bins 1 Hz apart
    fb = mel_filterbank(n_freqs, 0.0, 8000.0, n_mels, sr).numpy()
    pts = np.linspace(0, 2595 * np.log10(1 + 8000 / 700), n_mels + 2)
    centres = 700 * (10 ** (pts / 2595) - 1)
    freqs = np.linspace(0, 8000, n_freqs)
    for m in range(n_mels):
        lo, c, hi = centres[m], centres[m + 1], centres[m + 2]
        tri = np.clip(np.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c)), 0, None)
        np.testing.assert_allclose(fb[:, m], tri, atol=1e-4)
        assert abs(freqs[fb[:, m].argmax()] - c) <= 1.0
        assert fb[:, m].max() == pytest.approx(1.0, abs=2e-3)
    # Adjacent triangles cross-fade: between two centres they sum to 1.
    between = (freqs > centres[1]) & (freqs < centres[n_mels])
    np.testing.assert_allclose(fb[between].sum(1), 1.0, atol=1e-4)


def test_mel_scale_round_trip():
    f = torch.tensor([0.0, 700.0, 1000.0, 8000.0])
    assert torch.allclose(mel_to_hz(hz_to_mel(f)), f, atol=1e-2)
    assert hz_to_mel(700.0) == pytest.approx(2595 * math.log10(2))


def test_pure_tone_lands_in_the_band_around_its_frequency():
    cfg = AudioConfig(n_mels=40)
    sr = 16000
    t = torch.arange(sr // 2) / sr
    for f0 in (440.0, 1500.0, 5000.0):
        spec = log_mel(torch.sin(2 * math.pi * f0 * t), sr, cfg)  # [40, frames]
        band = int(spec[:, 10:-10].mean(1).argmax())
        pts = np.linspace(0, 2595 * np.log10(1 + (sr / 2) / 700), cfg.n_mels + 2)
        centres = 700 * (10 ** (pts / 2595) - 1)[1:-1]
        assert abs(band - int(np.abs(centres - f0).argmin())) <= 1, (f0, band)


def test_filterbank_rate_option_moves_the_tone():
    # Built for 16 kHz on 24 kHz audio (the authors' setting), bins are labelled 2/3 of their true
    # frequency, so a 3 kHz tone peaks in the band that would hold 2 kHz.
    sr = 24000
    t = torch.arange(sr // 2) / sr
    wav = torch.sin(2 * math.pi * 3000.0 * t)
    true = log_mel(wav, sr, AudioConfig(n_mels=64))[:, 10:-10].mean(1).argmax()
    theirs = log_mel(wav, sr, AudioConfig(n_mels=64, filterbank_rate=16000))[:, 10:-10].mean(1).argmax()
    pts16 = np.linspace(0, 2595 * np.log10(1 + 8000 / 700), 66)
    centres16 = 700 * (10 ** (pts16 / 2595) - 1)[1:-1]
    assert int(theirs) == int(np.abs(centres16 - 2000.0).argmin())
    assert int(theirs) != int(true)


def _numpy_log_mel(x: np.ndarray, sr: int, cfg: AudioConfig) -> np.ndarray:
    """An independent float64 definition: reflect pad, Hann window centred in n_fft, |rfft|^2, HTK bank."""
    n_fft, hop, win = cfg.n_fft, cfg.hop_length, cfg.win_length
    pad = np.pad(x, n_fft // 2, mode="reflect")
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)  # periodic, as torch.hann_window
    w = np.zeros(n_fft)
    w[(n_fft - win) // 2 : (n_fft - win) // 2 + win] = hann
    frames = np.stack([pad[j * hop : j * hop + n_fft] for j in range(1 + len(x) // hop)])
    power = np.abs(np.fft.rfft(frames * w, axis=1)) ** 2  # [frames, n_freqs]
    freqs = np.linspace(0, sr // 2, n_fft // 2 + 1)
    mels = np.linspace(0, 2595 * np.log10(1 + (sr // 2) / 700), cfg.n_mels + 2)
    f = 700 * (10 ** (mels / 2595) - 1)
    fb = np.stack(
        [np.clip(np.minimum((freqs - f[m]) / (f[m + 1] - f[m]), (f[m + 2] - freqs) / (f[m + 2] - f[m + 1])), 0, None)
         for m in range(cfg.n_mels)], axis=1)
    return 10 * np.log10(np.maximum(power @ fb, 1e-10)).T


def test_log_mel_matches_an_independent_numpy_definition():
    cfg = AudioConfig(n_fft=256, win_length=64, hop_length=32, n_mels=16)
    x = np.random.default_rng(0).standard_normal(1000)
    ours = log_mel(torch.from_numpy(x).float(), 8000, cfg).numpy()
    ref = _numpy_log_mel(x, 8000, cfg)
    assert ours.shape == ref.shape == (16, 1 + 1000 // 32)
    np.testing.assert_allclose(ours, ref, atol=2e-3)


def test_db_floor():
    assert to_db(torch.tensor([0.0, 1.0, 100.0])).tolist() == pytest.approx([-100.0, 0.0, 20.0])


@pytest.mark.parametrize("n_fft,win,hop", [(1024, 160, 80), (256, 256, 64), (512, 100, 50)])
def test_segments_fast_path_equals_plain_definition(n_fft, win, hop):
    cfg = AudioConfig(n_fft=n_fft, win_length=win, hop_length=hop, n_mels=32)
    rng = np.random.default_rng(1)
    wave = torch.from_numpy(rng.standard_normal(12000).astype(np.float32))
    length = 3001
    # Overlapping segments, some aligned on the hop grid with each other and some not.
    starts = np.array([0, hop * 3, hop * 3 + 7, 4000, 4000 + hop * 5, 12000 - length])
    plain = torch.stack([log_mel(wave[s : s + length], 16000, cfg) for s in starts])
    fast = log_mel_segments(wave, starts, length, 16000, cfg)
    assert fast.shape == plain.shape
    torch.testing.assert_close(fast, plain, atol=2e-3, rtol=0)
    cols = np.array([0, 1, 5, 17, plain.shape[-1] - 1])
    torch.testing.assert_close(log_mel_segments(wave, starts, length, 16000, cfg, columns=cols), plain[..., cols],
                               atol=2e-3, rtol=0)


@pytest.mark.parametrize("n_fft,win,hop", [(1024, 160, 80), (512, 400, 160)])
def test_segments_on_one_hop_grid_equal_plain_definition(n_fft, win, hop):
    # Every start on the hop grid (as EPIC's 60 fps frames at 24 kHz with hop 80): the interior
    # frames are read as rows of one strided view of the waveform.
    cfg = AudioConfig(n_fft=n_fft, win_length=win, hop_length=hop, n_mels=32)
    wave = torch.from_numpy(np.random.default_rng(2).standard_normal(30000).astype(np.float32))
    length = 2401
    starts = np.array([hop * 2, hop * 2, hop * 9, hop * 40, hop * 41 + 0, hop * 150])
    plain = torch.stack([log_mel(wave[s : s + length], 16000, cfg) for s in starts])
    fast = log_mel_segments(wave, starts, length, 16000, cfg)
    torch.testing.assert_close(fast, plain, atol=2e-3, rtol=0)
    # A segment moved by one sample differs from its grid neighbour: the strided rows are not
    # read from the wrong offset.
    shifted = log_mel_segments(wave, starts + 1, length, 16000, cfg)
    assert (shifted - fast).abs().max() > 0.1


def test_segments_outside_waveform_raise():
    with pytest.raises(ValueError, match="do not fit"):
        log_mel_segments(torch.zeros(1000), np.array([500]), 800, 16000, AudioConfig(n_fft=256, win_length=64, hop_length=32))
