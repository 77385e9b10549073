"""Log-mel spectrograms as torchaudio's `MelSpectrogram` computes them, without torchaudio.

`log_mel` is the plain definition (torch.stft on one waveform). `log_mel_segments` computes the
same values for many overlapping segments of one waveform at once: an STFT frame only reads the
`win_length` samples under its (zero-padded) window, so segments whose frames fall on the same
samples share them, and only the frames a later nearest-neighbour resize keeps are computed.
For EPIC's 16 segments of 1.116 s per clip this does roughly a tenth of the work.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from egodistill.config import AudioConfig


def hz_to_mel(f: torch.Tensor | float) -> torch.Tensor | float:
    """Return HTK mels of frequency `f` (Hz): 2595 * log10(1 + f / 700)."""
    if isinstance(f, torch.Tensor):
        return 2595.0 * torch.log10(1.0 + f / 700.0)
    return 2595.0 * math.log10(1.0 + f / 700.0)


def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    """Return the frequency (Hz) of HTK mels `m`: 700 * (10^(m / 2595) - 1)."""
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int) -> torch.Tensor:
    """Return the HTK mel filterbank `[n_freqs, n_mels]` float32, no normalisation.

    Same definition as torchaudio.functional.melscale_fbanks(..., norm=None, mel_scale="htk"):
    STFT bin k sits at k * (sample_rate // 2) / (n_freqs - 1) Hz; band m is a triangle rising
    from the (m)-th to the (m+1)-th and falling to the (m+2)-th of `n_mels + 2` points equally
    spaced in mels between f_min and f_max, peaking at 1.
    """
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    m_pts = torch.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2)
    f_pts = mel_to_hz(m_pts)
    f_diff = f_pts[1:] - f_pts[:-1]  # [n_mels + 1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)  # [n_freqs, n_mels + 2]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.clamp(torch.minimum(down, up), min=0.0)


def _filterbank(cfg: AudioConfig, sample_rate: int) -> torch.Tensor:
    rate = cfg.filterbank_rate or sample_rate  # the authors' teacher needs 16000 on 24 kHz audio
    return _cached_filterbank(cfg.n_fft // 2 + 1, cfg.n_mels, int(rate))


_FB_CACHE: dict[tuple[int, int, int], torch.Tensor] = {}


def _cached_filterbank(n_freqs: int, n_mels: int, rate: int) -> torch.Tensor:
    key = (n_freqs, n_mels, rate)
    if key not in _FB_CACHE:
        _FB_CACHE[key] = mel_filterbank(n_freqs, 0.0, float(rate // 2), n_mels, rate)
    return _FB_CACHE[key]


_BANDS_CACHE: dict[int, tuple[torch.Tensor, list[tuple[int, int, int, int]]]] = {}


def _mel_bands(fb: torch.Tensor, group: int = 16) -> list[tuple[int, int, int, int]]:
    """Return `(m0, m1, k0, k1)` blocks of `group` mel bands and the STFT bins `k0:k1` they read."""
    key = id(fb)  # the entry holds fb itself, so its id cannot be reused by another tensor
    if key not in _BANDS_CACHE or _BANDS_CACHE[key][0] is not fb:
        nz = fb > 0
        blocks = []
        for m0 in range(0, fb.shape[1], group):
            m1 = min(m0 + group, fb.shape[1])
            bins = nz[:, m0:m1].any(1).nonzero().view(-1)
            k0, k1 = (int(bins.min()), int(bins.max()) + 1) if len(bins) else (0, 0)
            blocks.append((m0, m1, k0, k1))
        _BANDS_CACHE[key] = (fb, blocks)
    return _BANDS_CACHE[key][1]


def mel_power(power: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
    """Return `power @ fb` `[N, n_mels]` for power spectra `[N, n_freqs]` and a filterbank `[n_freqs, n_mels]`.

    Each triangular band reads only a few bins, so blocks of bands are multiplied with just the
    bins they cover (about a fifth of the dense product's work; the skipped terms are exact zeros).
    """
    out = torch.zeros(power.shape[0], fb.shape[1], dtype=power.dtype)
    for m0, m1, k0, k1 in _mel_bands(fb):
        if k1 > k0:
            torch.matmul(power[:, k0:k1], fb[k0:k1, m0:m1], out=out[:, m0:m1])
    return out


def to_db(power: torch.Tensor) -> torch.Tensor:
    """Return `10 * log10(max(power, 1e-10))`."""
    return 10.0 * torch.log10(torch.clamp(power, min=1e-10))


def log_mel(waveform: torch.Tensor, sample_rate: int, cfg: AudioConfig) -> torch.Tensor:
    """Return the log-mel spectrogram (dB) of `waveform` `[..., L]`: `[..., n_mels, 1 + L // hop]`.

    torchaudio MelSpectrogram defaults: Hann window of `win_length` centred in `n_fft`, centred
    frames with reflect padding, power 2, HTK mel bands from 0 Hz to half the filterbank rate.
    """
    window = torch.hann_window(cfg.win_length, dtype=waveform.dtype)
    shape = waveform.shape
    spec = torch.stft(
        waveform.reshape(-1, shape[-1]), cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
        window=window, center=True, pad_mode="reflect", return_complex=True,
    )  # [N, n_freqs, frames]
    power = spec.real**2 + spec.imag**2
    mel = torch.matmul(power.transpose(1, 2), _filterbank(cfg, sample_rate)).transpose(1, 2)  # [N, n_mels, frames]
    return to_db(mel).reshape(*shape[:-1], cfg.n_mels, -1)


def num_stft_frames(length: int, hop: int) -> int:
    """Return the number of centred STFT frames of a signal of `length` samples."""
    return 1 + length // hop


@functools.lru_cache(maxsize=8)
def hann_window(win: int) -> torch.Tensor:
    """The periodic Hann window of `win` samples (float32), built once per length."""
    return torch.hann_window(win, dtype=torch.float32)


def _power(spec: torch.Tensor) -> torch.Tensor:
    """Return `|spec|^2` `[N, F]` float32 of complex64 `spec` `[N, F]`."""
    sq = torch.view_as_real(spec).square()  # [N, F, 2]: squaring the interleaved pairs is one fast pass
    return sq[..., 0] + sq[..., 1]


def stft_frame_plan(
    starts: np.ndarray,
    length: int,
    wave_length: int,
    cfg: AudioConfig,
    columns: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return which distinct STFT frames segments `wave[s : s + length]` need, and where each goes.

    Returns `(first, edge, index)`: `first` int64 `[U]`, the first sample of each distinct interior
    frame's window in the waveform (frames that never touch a segment's reflect padding, shared by
    every segment whose frames fall on the same samples); `edge` int64 `[E, win]`, the waveform
    sample under each window position of the frames that do (read per segment); `index` int64
    `[N, J]`: column `columns[i, j]` of segment i is frame `index[i, j]` of the U + E frames,
    interior ones first. Arguments as `log_mel_frames` (`wave_length`: samples in the waveform).
    """
    n_fft, hop, win = cfg.n_fft, cfg.hop_length, cfg.win_length
    if length <= n_fft // 2:
        raise ValueError(f"audio segments of {length} samples are too short for reflect padding of n_fft={n_fft}")
    starts = np.asarray(starts, dtype=np.int64)
    if starts.min() < 0 or starts.max() + length > wave_length:
        raise ValueError(f"segments [{starts.min()}, {starts.max() + length}) do not fit in a waveform of {wave_length} samples")
    n_seg = len(starts)
    cols = np.arange(num_stft_frames(length, hop)) if columns is None else np.asarray(columns, dtype=np.int64)
    cols = np.broadcast_to(cols, (n_seg, cols.shape[-1]))  # [N, J]
    left = (n_fft - win) // 2  # torch.stft centres a short window inside n_fft
    first = cols * hop - n_fft // 2 + left  # [N, J] first sample under the frame's window, in its segment
    interior = (first >= 0) & (first + win <= length)  # frames that never touch the reflect padding
    pos = starts[:, None] + first  # [N, J]
    uniq, inverse = np.unique(pos[interior], return_inverse=True)
    seg_i, col_i = np.nonzero(~interior)
    p = first[seg_i, col_i][:, None] + np.arange(win)[None, :]  # [E, win] positions in the segment
    p = np.where(p < 0, -p, p)
    p = np.where(p >= length, 2 * (length - 1) - p, p)
    edge = starts[seg_i, None] + p  # [E, win] positions in the waveform
    index = np.empty((n_seg, cols.shape[1]), dtype=np.int64)
    index[interior] = inverse.reshape(-1)
    index[seg_i, col_i] = len(uniq) + np.arange(len(seg_i))
    return uniq, edge, index


def windowed_frames(wave: torch.Tensor, first: np.ndarray, edge: np.ndarray, win: int, hop: int) -> torch.Tensor:
    """Return the Hann-windowed frames float32 `[U + E, win]` of a `stft_frame_plan` (CPU).

    The window's position inside the n_fft frame only changes the phase, so each frame is its
    windowed samples, zero-padded to n_fft by the FFT (`mel_db`).
    """
    window = hann_window(win)
    frames = torch.empty(len(first) + len(edge), win, dtype=torch.float32)
    wave = wave.to(torch.float32)
    if len(first) and np.all((first - first[0]) % hop == 0):
        # Frames on one hop grid (frame times on whole hops, as EPIC's 60 fps / 24 kHz): rows of
        # a strided view of the waveform, no index array.
        grid = wave[int(first[0]):].unfold(0, win, hop)  # [K, win] view
        torch.mul(grid[torch.from_numpy((first - first[0]) // hop)], window, out=frames[: len(first)])
    elif len(first):
        torch.mul(wave[torch.from_numpy(first[:, None] + np.arange(win)[None, :])], window, out=frames[: len(first)])
    if len(edge):
        torch.mul(wave[torch.from_numpy(edge)], window, out=frames[len(first):])
    return frames


def gather_windowed(wave: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Return the Hann-windowed frames `wave[rows]` float32 `[F, win]` (`rows` int64 `[F, win]`,
    sample indices), on `wave`'s device."""
    return wave[rows] * _on_device(hann_window(rows.shape[1]), wave.device)


def mel_db(frames: torch.Tensor, sample_rate: int, cfg: AudioConfig) -> torch.Tensor:
    """Return the log-mel frames (dB) float32 `[F, n_mels]` of windowed frames `[F, win]`, on
    their device: FFT zero-padded to n_fft, power, HTK mel bands, 10 log10."""
    spec = torch.fft.rfft(frames, n=cfg.n_fft)  # [F, n_freqs]
    fb = _filterbank(cfg, sample_rate)
    if frames.device.type == "cpu":
        mel = mel_power(_power(spec), fb)  # [F, n_mels], ours to overwrite
    else:  # an accelerator multiplies the dense filterbank faster than it launches the banded blocks
        mel = _power(spec) @ _on_device(fb, frames.device)
    return mel.clamp_(min=1e-10).log10_().mul_(10.0)  # to_db, in place


@functools.lru_cache(maxsize=16)
def _on_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    # A cached constant (filterbank, window) copied once per device: a copy each step would wait.
    return t.to(device)


def log_mel_frames(
    wave: torch.Tensor,
    starts: np.ndarray,
    length: int,
    sample_rate: int,
    cfg: AudioConfig,
    columns: np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the distinct log-mel frames of segments `wave[s : s + length]` and where each goes.

    Returns `(db, index)`: `db` `[U, n_mels]` (dB) and `index` `[N, J]` int64 such that
    `db[index[i, j]]` is frame `columns[i, j]` of segment i's log-mel spectrogram. `wave` `[M]`
    float32 must hold every segment; `starts` `[N]`; `columns` `[J]` or `[N, J]`, repeats
    allowed (default all `1 + length // hop` frames).
    """
    first, edge, index = stft_frame_plan(starts, length, wave.shape[0], cfg, columns)
    frames = windowed_frames(wave, first, edge, cfg.win_length, cfg.hop_length)
    return mel_db(frames, sample_rate, cfg), torch.from_numpy(index)


def log_mel_segments(
    wave: torch.Tensor,
    starts: np.ndarray,
    length: int,
    sample_rate: int,
    cfg: AudioConfig,
    columns: np.ndarray | None = None,
) -> torch.Tensor:
    """Return `log_mel(wave[s : s + length])[..., columns]` for every start s: `[N, n_mels, J]`.

    Arguments as `log_mel_frames`; equal to the plain definition up to float rounding.
    """
    db, index = log_mel_frames(wave, starts, length, sample_rate, cfg, columns)
    return db[index].transpose(1, 2)
