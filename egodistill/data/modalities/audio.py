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
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from egodistill.config import AudioConfig, Config
from egodistill.data.audio import gather_windowed, log_mel_frames, mel_db, num_stft_frames, stft_frame_plan
from egodistill.data.modalities import DeviceClips, Modality, Segment, register, store_name, writable
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


def mel_rows(acfg: AudioConfig, size: int) -> np.ndarray:
    """Return the mel band each shipped spectrogram row holds `[R]`, R = min(n_mels, S): every
    band, or (more bands than S) the band each of the S output rows reads."""
    return np.arange(acfg.n_mels) if acfg.n_mels <= size else nearest_columns(acfg.n_mels, size)


def draw_columns_and_masks(
    t: int, n_cols: int, size: int, bands: np.ndarray, acfg: AudioConfig, rng: np.random.Generator | None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Return `(cols, row_mask, col_mask)` of `t` segments of `n_cols` STFT frames: `cols` int64
    `[T, S]`, the frame each output column shows (nearest resize, time-stretched with `rng`), and
    with `rng` the training masks, bool `[T, R]` over the rows `bands` and `[T, S]` over the
    columns (None when off or without `rng`)."""
    cols = np.broadcast_to(nearest_columns(n_cols, size), (t, size)).copy()
    if rng is None:
        return cols, None, None
    if acfg.time_stretch > 0:
        # Stretch by r about the centre (nearest column, edges repeated): content r times longer.
        r = rng.uniform(1.0 - acfg.time_stretch, 1.0 + acfg.time_stretch, size=(t, 1))
        c = (n_cols - 1) / 2
        cols = np.clip(np.rint(c + (cols - c) / r), 0, n_cols - 1).astype(np.int64)
    row_mask = np.zeros((t, len(bands)), dtype=bool) if acfg.freq_mask > 0 else None
    col_mask = np.zeros((t, size), dtype=bool) if acfg.time_mask > 0 else None
    for i in range(t):  # one draw per segment, frequency then time, in this order
        if row_mask is not None:
            w = int(rng.integers(0, acfg.freq_mask + 1))
            f0 = int(rng.integers(0, acfg.n_mels - w + 1))
            row_mask[i] = (bands >= f0) & (bands < f0 + w)
        if col_mask is not None:
            w = int(rng.integers(0, acfg.time_mask + 1))
            c0 = int(rng.integers(0, n_cols - w + 1))
            col_mask[i] = (cols[i] >= c0) & (cols[i] < c0 + w)
    return cols, row_mask, col_mask


def spectrogram_images(
    db: torch.Tensor, index: torch.Tensor, bands: np.ndarray, acfg: AudioConfig,
    row_mask: torch.Tensor | None = None, col_mask: torch.Tensor | None = None, out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return normalised log-mel images `[T, 1, R, S]` from distinct frames `db` `[F, n_mels]` (dB):
    column j of image i is frame `index[i, j]` (`index` `[T, S]`), row r its band `bands[r]`;
    masked rows and columns (`[T, R]`, `[T, S]` bool) set to 0, the normalised mean. On `db`'s
    device; the layout of `spectrogram_video`, written into `out` when it has it."""
    t, size = index.shape
    db = (db - acfg.mean) / acfg.std  # normalise the few distinct frames, not the images
    if acfg.n_mels > size:
        db = db[:, torch.from_numpy(bands).to(db.device)]  # [F, S]
    # Column j of segment i is distinct frame index[i, j]: one row gather of whole frames.
    dst = writable(out, (0, 1, 3, 2), (t, 1, size, len(bands)), torch.float32)
    if dst is None:
        x = torch.index_select(db, 0, index.reshape(-1)).view(t, size, len(bands))  # [T, S, R]
        x = x.transpose(1, 2).unsqueeze(1)  # [T, 1, R, S] view
    else:
        torch.index_select(db, 0, index.reshape(-1), out=torch.from_numpy(dst).view(t * size, len(bands)))
        x = out
    if row_mask is not None:
        x.masked_fill_(row_mask[:, None, :, None], 0.0)
    if col_mask is not None:
        x.masked_fill_(col_mask[:, None, None, :], 0.0)
    return x


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
    bands = mel_rows(acfg, size)
    n_cols = num_stft_frames(length, acfg.hop_length)
    cols, row_mask, col_mask = draw_columns_and_masks(len(starts), n_cols, size, bands, acfg, rng)
    db, index = log_mel_frames(wave, starts, length, sample_rate, acfg, columns=cols)  # [U, n_mels], [T, S]
    as_tensor = lambda m: None if m is None else torch.from_numpy(m)  # noqa: E731
    return spectrogram_images(db, index, bands, acfg, as_tensor(row_mask), as_tensor(col_mask), out)


@dataclass
class MelClips(DeviceClips):
    """Audio clips as waveforms, their spectrograms made on the device (data.decode=gpu).

    `wave` float32 `[M]`: every clip's waveform back to back; the STFT frames (`stft_frame_plan`)
    of all clips, F in all: frame f's window starts at sample `first[f]` of `wave`, except the
    frames `edge_rows` `[E]` that read a segment's reflect padding, whose window samples are
    `edge` `[E, win]`; `index` `[N, T, S]`: the frame each output column shows; `row_mask`
    `[N, T, R]` / `col_mask` `[N, T, S]` bool or None: training masks; `rates` `[N]` and
    `frames` `[N]`: each clip's sample rate and frame count; `bands` `[R]`; `cfg`; `lead`.
    """

    wave: torch.Tensor
    first: torch.Tensor
    edge_rows: torch.Tensor
    edge: torch.Tensor
    index: torch.Tensor
    row_mask: torch.Tensor | None
    col_mask: torch.Tensor | None
    rates: torch.Tensor
    frames: torch.Tensor
    bands: np.ndarray
    cfg: AudioConfig
    lead: tuple[int, ...]

    @classmethod
    def stack(cls, parts: list[MelClips]) -> MelClips:
        """Return the clips of `parts` (equal leads) with a new leading dimension `len(parts)`."""
        first = parts[0]
        if any(p.lead != first.lead for p in parts):
            raise ValueError(f"cannot stack audio clips of leads {[p.lead for p in parts]}")
        at_wave = np.cumsum([0] + [len(p.wave) for p in parts])
        at_frame = np.cumsum([0] + [len(p.first) for p in parts])
        masks = lambda key: None if getattr(first, key) is None else torch.cat([getattr(p, key) for p in parts])  # noqa: E731
        return cls(
            torch.cat([p.wave for p in parts]),
            torch.cat([p.first + int(w) for p, w in zip(parts, at_wave)]),
            torch.cat([p.edge_rows + int(f) for p, f in zip(parts, at_frame)]),
            torch.cat([p.edge + int(w) for p, w in zip(parts, at_wave)]),
            torch.cat([p.index + int(f) for p, f in zip(parts, at_frame)]),
            masks("row_mask"), masks("col_mask"),
            torch.cat([p.rates for p in parts]), torch.cat([p.frames for p in parts]),
            first.bands, first.cfg, (len(parts), *first.lead))

    def decode(self, device: torch.device | str) -> torch.Tensor:
        """Return the clips' normalised log-mel videos float32 `[*lead, T, 1, R, S]` on `device`,
        laid out as the CPU loader's batch (see `spectrogram_video`)."""
        device = torch.device(device)
        win = self.cfg.win_length
        rows = self.first.to(device)[:, None] + torch.arange(win, device=device)  # [F, win]
        rows[self.edge_rows.to(device)] = self.edge.to(device)
        frames = gather_windowed(self.wave.to(device), rows)
        rates = self.rates.tolist()
        if len(set(rates)) == 1:
            db = mel_db(frames, rates[0], self.cfg)
        else:  # clips of videos recorded at other rates: each rate's filterbank on its frames
            frame_rate = torch.repeat_interleave(self.rates, self.frames).to(device)
            db = torch.empty(len(frames), self.cfg.n_mels, device=device)
            for rate in set(rates):
                db[frame_rate == rate] = mel_db(frames[frame_rate == rate], rate, self.cfg)
        n, t, size = self.index.shape
        on = lambda m: None if m is None else m.reshape(n * t, -1).to(device)  # noqa: E731
        x = spectrogram_images(db, self.index.view(n * t, size).to(device), self.bands, self.cfg,
                               on(self.row_mask), on(self.col_mask))
        return x.view(*self.lead, t, 1, len(self.bands), size)


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
    device_decode = "device"  # data.decode=gpu: waveforms shipped, spectrograms made there (MelClips)

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

    def _segments(self, store: AudioStore, view: ViewParams, cfg: Config, segment: Segment):
        """Return `(wave, starts, length, rate)`: the waveform float32 `[M]` that holds the view's
        segments, their first samples in it `[T]`, their length and the sample rate."""
        acfg = cfg.data.audio
        sr = int(store.sample_rate(segment.video_id))
        length = int(round(acfg.segment_seconds * sr))
        starts = segment_starts(segment.frame_numbers(view), segment.first_frame, segment.fps, sr, length)
        lo, hi = int(starts.min()), int(starts.max()) + length
        wave = torch.from_numpy(np.ascontiguousarray(store.read(segment.video_id, lo, hi), dtype=np.float32))
        if wave.shape[0] != hi - lo:
            raise ValueError(f"{store_name(store)}: video {segment.video_id}: read {wave.shape[0]} samples, expected {hi - lo}")
        return wave, starts - lo, length, sr

    @staticmethod
    def _rng(view: ViewParams, train: bool) -> np.random.Generator | None:
        # Seeded by the view's colour seed: a replayed view is the same input.
        return np.random.default_rng([view.color_seed, 0xA0D10]) if train else None

    def load(self, store, sample: Sample, view: ViewParams, cfg: Config, train: bool, *, segment: Segment,
             out: torch.Tensor | None = None) -> torch.Tensor:
        """Return the view's log-mel video as float32 `[T, 1, R, S]`, R = min(n_mels, S) (see
        `spectrogram_video` and `normalize`)."""
        wave, starts, length, sr = self._segments(store, view, cfg, segment)
        return spectrogram_video(wave, starts, length, sr, cfg.data.audio, cfg.data.size, self._rng(view, train), out)

    def device_load(self, store, sample: Sample, view: ViewParams, cfg: Config, train: bool, *,
                    segment: Segment) -> MelClips:
        """Return the view's waveform and which STFT frames make its log-mel video (data.decode=gpu):
        the FFTs, mel bands and images are computed on the device (`MelClips.decode`), the same
        values `load` gives (float rounding aside)."""
        acfg, size = cfg.data.audio, cfg.data.size
        wave, starts, length, sr = self._segments(store, view, cfg, segment)
        bands = mel_rows(acfg, size)
        n_cols = num_stft_frames(length, acfg.hop_length)
        cols, row_mask, col_mask = draw_columns_and_masks(len(starts), n_cols, size, bands, acfg, self._rng(view, train))
        first, edge, index = stft_frame_plan(starts, length, len(wave), acfg, cols)
        n_frames = len(first) + len(edge)
        as_batch = lambda m: None if m is None else torch.from_numpy(m)[None]  # noqa: E731
        return MelClips(
            wave, torch.from_numpy(np.concatenate([first, np.zeros(len(edge), np.int64)])),
            torch.arange(len(first), n_frames), torch.from_numpy(edge), torch.from_numpy(index)[None],
            as_batch(row_mask), as_batch(col_mask), torch.tensor([sr]), torch.tensor([n_frames]), bands, acfg, ())

    def normalize(self, x):
        """Return log-mel videos `[..., 1, R, S]` (see `spectrogram_video`) as the `[..., 3, S, S]`
        the audio Swin reads: mel rows repeated to S (nearest), then the one channel expanded
        to 3 (a view). Batches carry one channel of R rows, a fifth of the bytes to stack and move."""
        x = expand_mel_rows(x)
        return x.expand(*x.shape[:-3], 3, *x.shape[-2:]) if x.shape[-3] == 1 else x


register(AudioModality())
