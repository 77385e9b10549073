"""Audio as a "video of spectrograms": one log-mel segment per sampled frame (METHOD.md §7).

Frame f is at time (f - first_frame) / fps (the first frame at t = 0, as `egodistill synth`
renders its sound); its segment of `segment_seconds` is centred on that time and zero-padded
outside the recording. Each segment becomes a log-mel spectrogram in dB, resized to S x S
(nearest) and normalised with the configured mean/std. The loader resizes the time axis and
hands out the mel bands as rows, `[T, 1, n_mels, S]` (when n_mels < S); `AudioModality.normalize`
repeats the rows to S and the one channel to the model's 3, on the device.
Spatial crop and flip do not apply. Training augmentation (seeded by the view's colour seed, so
a replayed view is the same input): time stretch about the segment centre, one frequency mask
and one time mask per segment (masked values are set to 0, the normalised mean).
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from egodistill.config import AudioConfig, Config
from egodistill.data.audio import log_mel_frames, num_stft_frames
from egodistill.data.modalities import Modality, Segment, register, store_name, writable
from egodistill.data.records import Sample
from egodistill.data.stores import AudioStore, AudioWriter
from egodistill.data.views import ViewParams


def nearest_columns(n_in: int, n_out: int) -> np.ndarray:
    """Return the source index of each of `n_out` outputs of F.interpolate(mode="nearest") from `n_in`."""
    key = (int(n_in), int(n_out))
    if key not in _NEAREST:
        idx = torch.arange(n_in, dtype=torch.float32).view(1, 1, n_in)
        _NEAREST[key] = F.interpolate(idx, size=n_out, mode="nearest").view(-1).long().numpy()
    return _NEAREST[key].copy()


_NEAREST: dict[tuple[int, int], np.ndarray] = {}


def segment_starts(frame_numbers: np.ndarray, first_frame: int, fps: float, sample_rate: int, length: int) -> np.ndarray:
    """Return the first sample `[T]` of the `length`-sample segment centred on each frame's time."""
    centre = np.rint((np.asarray(frame_numbers, dtype=np.float64) - first_frame) / fps * sample_rate).astype(np.int64)
    return centre - length // 2


def spectrogram_video(
    wave: torch.Tensor, starts: np.ndarray, length: int, sample_rate: int, acfg: AudioConfig, size: int,
    rng: np.random.Generator | None = None, out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return the normalised log-mel "video" `[T, 1, R, S]` of segments `wave[s : s + length]`.

    Each segment's log-mel spectrogram is resized to S columns with nearest-neighbour
    interpolation; R = min(n_mels, S) rows: with fewer mel bands than S, the rows are the bands
    themselves and `AudioModality.normalize` repeats them to S rows (nearest) and to the model's
    3 channels on the device, where that is a cheap gather; the result equals resizing the full
    spectrogram to S x S. Only the STFT frames that the resize keeps are computed. With `rng`
    (training), time stretch and time/frequency masks are drawn per segment.

    The tensor is a view `[T, 1, R, S]` of memory laid out `[T, S, R]` (each column's bands
    together): built by one gather of whole frames, ~15x faster than writing each image row by
    row; `collate` keeps that layout. Written into `out` (returned) when it has that layout.
    """
    t = len(starts)
    n_cols = num_stft_frames(length, acfg.hop_length)
    cols = np.broadcast_to(nearest_columns(n_cols, size), (t, size)).copy()  # [T, S] source frame of each column
    if rng is not None and acfg.time_stretch > 0:
        # Stretch by r about the centre (nearest column, edges repeated): content r times longer.
        r = rng.uniform(1.0 - acfg.time_stretch, 1.0 + acfg.time_stretch, size=(t, 1))
        c = (n_cols - 1) / 2
        cols = np.clip(np.rint(c + (cols - c) / r), 0, n_cols - 1).astype(np.int64)
    db, index = log_mel_frames(wave, starts, length, sample_rate, acfg, columns=cols)  # [U, n_mels], [T, S]
    db = (db - acfg.mean) / acfg.std  # normalise the few distinct frames, not the images
    # The mel band each shipped row holds: every band, or (more bands than S) the band each of
    # the S output rows reads.
    bands = np.arange(acfg.n_mels) if acfg.n_mels <= size else nearest_columns(acfg.n_mels, size)
    if acfg.n_mels > size:
        db = db[:, torch.from_numpy(bands)]  # [U, S]
    # Column j of segment i is distinct frame index[i, j]: one row gather of whole frames.
    dst = writable(out, (0, 1, 3, 2), (t, 1, size, len(bands)), torch.float32)
    if dst is None:
        x = torch.index_select(db, 0, index.view(-1)).view(t, size, len(bands))  # [T, S, R]
        x = x.transpose(1, 2).unsqueeze(1)  # [T, 1, R, S] view
    else:
        torch.index_select(db, 0, index.view(-1), out=torch.from_numpy(dst).view(t * size, len(bands)))
        x = out
    if rng is not None:
        for i in range(t):
            if acfg.freq_mask > 0:
                w = int(rng.integers(0, acfg.freq_mask + 1))
                f0 = int(rng.integers(0, acfg.n_mels - w + 1))
                x[i, 0, torch.from_numpy((bands >= f0) & (bands < f0 + w))] = 0.0
            if acfg.time_mask > 0:
                w = int(rng.integers(0, acfg.time_mask + 1))
                c0 = int(rng.integers(0, n_cols - w + 1))
                x[i, 0, :, torch.from_numpy((cols[i] >= c0) & (cols[i] < c0 + w))] = 0.0
    return x


def expand_mel_rows(x: torch.Tensor) -> torch.Tensor:
    """Return log-mel images `[..., R, S]` with R < S mel-band rows resized to S rows (nearest,
    as F.interpolate), contiguous; square images pass through."""
    r, s = x.shape[-2], x.shape[-1]
    if r >= s:
        return x
    return x[..., _row_index(r, s, x.device), :]  # (2x faster than index_select on CPU for this layout)


@functools.lru_cache(maxsize=16)
def _row_index(r: int, s: int, device: torch.device) -> torch.Tensor:
    # Built once per device: a host-to-device copy each step would wait for the accelerator.
    return torch.from_numpy(nearest_columns(r, s)).to(device)


class AudioModality(Modality):
    name = "audio"
    order = 2
    reader, writer = AudioStore, AudioWriter
    device_decode = "host"  # data.decode=gpu: loaded as with decode=cpu (no JPEGs)

    def channels(self, cfg: Config) -> int:
        return 3

    def span(self, store: AudioStore, video_id: str) -> tuple[int, int]:
        """Return (0, samples) of the video's waveform."""
        return 0, store.num_samples(video_id)

    def check_segment(self, store: AudioStore, video_id: str, start: int, stop: int, stop_timestamp: str | None) -> str | None:
        """Return a problem when the waveform ends before the segment's stop time (untimed
        annotations: nothing to check)."""
        from egodistill.data.annotations import parse_timestamp

        if stop_timestamp is None:
            return None
        have = store.num_samples(video_id)
        need = int(np.ceil(parse_timestamp(stop_timestamp) * store.sample_rate(video_id)))
        if need > have:
            return f"video {video_id} has {have:,} audio samples, the segment ends at sample {need:,} ({stop_timestamp})"
        return None

    def load(self, store, sample: Sample, view: ViewParams, cfg: Config, train: bool, *, segment: Segment,
             out: torch.Tensor | None = None) -> torch.Tensor:
        """Return the view's log-mel video as float32 `[T, 1, R, S]`, R = min(n_mels, S) (see
        `spectrogram_video` and `normalize`)."""
        acfg = cfg.data.audio
        sr = int(store.sample_rate(segment.video_id))
        length = int(round(acfg.segment_seconds * sr))
        starts = segment_starts(segment.frame_numbers(view), segment.first_frame, segment.fps, sr, length)
        lo, hi = int(starts.min()), int(starts.max()) + length
        wave = torch.from_numpy(np.ascontiguousarray(store.read(segment.video_id, lo, hi), dtype=np.float32))
        if wave.shape[0] != hi - lo:
            raise ValueError(f"{store_name(store)}: video {segment.video_id}: read {wave.shape[0]} samples, expected {hi - lo}")
        rng = np.random.default_rng([view.color_seed, 0xA0D10]) if train else None
        return spectrogram_video(wave, starts - lo, length, sr, acfg, cfg.data.size, rng, out)

    def normalize(self, x):
        """Return log-mel videos `[..., 1, R, S]` (see `spectrogram_video`) as the `[..., 3, S, S]`
        the audio Swin reads: mel rows repeated to S (nearest), then the one channel expanded
        to 3 (a view). Batches carry one channel of R rows, a fifth of the bytes to stack and move."""
        x = expand_mel_rows(x)
        return x.expand(*x.shape[:-3], 3, *x.shape[-2:]) if x.shape[-3] == 1 else x


register(AudioModality())
