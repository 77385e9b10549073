"""`data.decode=gpu`: JPEG frames (RGB's, flow's) travel undecoded and are decoded, cropped,
resized and flipped on the training device, batched (`torchvision.io.decode_jpeg(list, device=...)`);
audio travels as waveforms and its spectrograms are computed there.

Each modality says how (`Modality.device_decode`): one of "jpeg" hands the loader each view's
distinct JPEGs (`Modality.device_jpegs`, read from the store as the CPU path reads them), the
loader hands out `JpegClips` instead of frames, and `engine.inputs.to_device` decodes them on
the device and has the modality make them the uint8 clips the CPU path gives
(`Modality.from_device_frames`: `[*lead, T, C, S, S]`; `Modality.normalize` then does the
rest). One of "device" (audio) hands out its own `DeviceClips` (`Modality.device_load`), which
`to_device` finishes the same way. One of "host" (layout) is built in the loader as before; one
that declares none of these is refused.

The geometry is one function (`crop_resize_flip`) for every device: OpenCV's bilinear
mapping (half-pixel centres; a box on whole source pixels is a slice resized with the edge
pixels repeated, any other box is sampled with the image's edge repeated, as `cv2.warpAffine`
does), computed in float32 and rounded. Against the CPU loader it differs only where OpenCV's
fixed-point weights round the other way: at most 1 grey level, on a few percent of the values
(measured on CPU with the same decoder, tests/data/test_gpu_decode.py). nvJPEG's IDCT and
chroma upsampling differ from libjpeg-turbo's by a few levels on some pixels; the CUDA test
allows 4 levels at most and a mean difference under 0.5 (not yet measured on a GPU).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from egodistill.config import Config, ConfigError
from egodistill.data.modalities import MODALITIES, DeviceClips, Segment
from egodistill.data.records import Sample
from egodistill.data.views import ViewParams


def check_decode(cfg: Config) -> None:
    """Raise ConfigError when `cfg.data.decode` cannot run here (gpu without CUDA, or with a
    loader-side colour jitter that needs decoded frames); return None otherwise."""
    if cfg.data.decode == "cpu":
        return
    if cfg.data.decode != "gpu":
        raise ConfigError(f"data.decode must be cpu or gpu, got {cfg.data.decode!r}")
    if not torch.cuda.is_available():
        raise ConfigError("data.decode=gpu decodes the JPEGs on a CUDA device, but torch finds none on this "
                          "machine; set data.decode=cpu")
    if cfg.data.color_jitter > 0:
        raise ConfigError("data.decode=gpu does not colour-jitter (the loader jitters decoded frames); "
                          "set data.color_jitter=0 or data.decode=cpu")


@dataclass
class JpegClips(DeviceClips):
    """The JPEGs of clips of one frame modality (`modality`, registered), to decode and cut on a device.

    `data` uint8 `[bytes]`: every distinct JPEG back to back, JPEG j at `offsets[j]:offsets[j+1]`
    (`offsets` int64 `[J+1]`); `frames` int64 `[N, T, P]`: the JPEG of plane p of frame t of
    clip n (`Modality.device_jpegs`: P = 1 for RGB, 2 for flow's u and v); `crops` float64
    `[N, 4]` (x1, y1, x2, y2 normalised to the source frame) and `flips` bool `[N]`: each clip's view; `lead`: the clips'
    leading dimensions (their product is N); `size`: S; `channels`: C of the decoded clips.
    """

    modality: str
    data: torch.Tensor
    offsets: torch.Tensor
    frames: torch.Tensor
    crops: torch.Tensor
    flips: torch.Tensor
    lead: tuple[int, ...]
    size: int
    channels: int

    @classmethod
    def stack(cls, parts: list[JpegClips]) -> JpegClips:
        """Return the clips of `parts` (equal leads) with a new leading dimension `len(parts)`."""
        first = parts[0]
        if any(p.lead != first.lead or p.modality != first.modality for p in parts):
            raise ValueError(f"cannot stack {first.modality} JPEG clips of leads {[p.lead for p in parts]}")
        starts = np.cumsum([0] + [len(p.offsets) - 1 for p in parts])
        base = np.cumsum([0] + [int(p.offsets[-1]) for p in parts])
        return JpegClips(
            first.modality, torch.cat([p.data for p in parts]),
            torch.cat([p.offsets[:-1] + int(b) for p, b in zip(parts, base)] + [torch.tensor([int(base[-1])])]),
            torch.cat([p.frames.view(-1, *p.frames.shape[-2:]) + int(s) for p, s in zip(parts, starts)]),
            torch.cat([p.crops for p in parts]), torch.cat([p.flips for p in parts]),
            (len(parts), *first.lead), first.size, first.channels)

    def decode(self, device: torch.device | str) -> torch.Tensor:
        """Return the clips decoded on `device`: uint8 `[*lead, T, C, S, S]` (see `decode_clips`)."""
        return decode_clips(self, device)


def _pack(blobs: list[bytes]) -> tuple[torch.Tensor, torch.Tensor]:
    """Return JPEG blobs back to back (uint8 `[bytes]`) and their offsets (int64 `[J+1]`)."""
    offsets = torch.from_numpy(np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64))
    return torch.frombuffer(bytearray(b"".join(blobs)), dtype=torch.uint8), offsets


def _clips(modality: str, blobs: list[bytes], frames: np.ndarray, view: ViewParams, size: int, channels: int) -> JpegClips:
    data, offsets = _pack(blobs)
    return JpegClips(modality, data, offsets, torch.from_numpy(frames.astype(np.int64)).unsqueeze(0),
                     torch.tensor([view.crop], dtype=torch.float64), torch.tensor([view.flip]), (), size, channels)


class DeviceLoader:
    """A modality's loader for data.decode=gpu: `load` returns one view's `DeviceClips` (a frame
    modality's JPEGs as `JpegClips`, or what the modality's `device_load` leaves to the device),
    `collate` stacks a sample's views (the `Modality` interface the dataset calls)."""

    def __init__(self, name: str):
        self.name = name

    def load(self, store, sample: Sample, view: ViewParams, cfg: Config, train: bool, *, segment: Segment,
             out: torch.Tensor | None = None) -> DeviceClips:
        """Return the view's work for the device (`out` is not used)."""
        mod = MODALITIES[self.name]
        if mod.device_decode == "device":
            return mod.device_load(store, sample, view, cfg, train, segment=segment)
        blobs, frames = mod.device_jpegs(store, sample, view, cfg, segment=segment)
        return _clips(self.name, blobs, frames, view, cfg.data.size, mod.channels(cfg))

    def collate(self, items: list[DeviceClips]) -> DeviceClips:
        return type(items[0]).stack(items)


def view_loader(name: str, cfg: Config):
    """Return what loads modality `name` for the dataset: its `Modality`, or with data.decode=gpu
    a `DeviceLoader` when the modality leaves work to the device (`Modality.device_decode`
    "jpeg" or "device"). Raise ConfigError under data.decode=gpu for a modality that does not
    declare how it loads there."""
    mod = MODALITIES[name]
    if cfg.data.decode != "gpu" or mod.device_decode == "host":
        return mod
    if mod.device_decode in ("jpeg", "device"):
        return DeviceLoader(name)
    raise ConfigError(
        f"data.decode=gpu: modality {name!r} does not declare how it loads there (Modality.device_decode "
        f"is {mod.device_decode!r}: 'jpeg' ships its JPEGs to the device, 'device' ships its own DeviceClips, "
        f"'host' loads it as with decode=cpu); set data.decode=cpu, or declare it in its module")


# --------------------------------------------------------------------------------------------
# On the device
# --------------------------------------------------------------------------------------------


_COEF_BITS = 11  # OpenCV's INTER_RESIZE_COEF_BITS: bilinear weights in 1/2048 steps


def _axis(n: int, lo: float, hi: float, size: int, exact: bool, device: torch.device):
    """Return the two source indices `[S]` (int64) and their integer weights `[S]` (int32, summing
    to 2048, as OpenCV's fixed-point resize) that bilinear resampling reads for output pixels
    0..S-1 of the source span [lo, hi) of `n` pixels, half-pixel centres. Coordinates are
    clamped to the span's pixels when it lies on whole pixels (cv2.resize of a slice), to the
    image's otherwise (warpAffine, BORDER_REPLICATE)."""
    first, last = (lo, hi - 1) if exact else (0, n - 1)
    scale = 1.0 / (size / (hi - lo))  # as OpenCV: the inverse of the inverse scale, in double
    # OpenCV rounds each coordinate to float32 before it takes the fraction (span-relative).
    x = ((torch.arange(size, dtype=torch.float64) + 0.5) * scale - 0.5).to(torch.float32).double() + lo
    x = x.clamp(first, last)
    i0 = x.floor()
    frac = (x - i0).to(torch.float32)
    w0 = ((1.0 - frac) * (1 << _COEF_BITS)).round().to(torch.int32)
    i0 = i0.long()
    i1 = (i0 + 1).clamp(max=int(last))
    return i0.to(device), i1.to(device), ((1 << _COEF_BITS) - w0).to(device)


def crop_resize_flip(frames: torch.Tensor, crop, flip: bool, size: int) -> torch.Tensor:
    """Return the view's crop of uint8 frames `[T, c, H, W]` resized to S x S and flipped when
    `flip`: uint8 `[T, c, S, S]` on the frames' device (bilinear as `views.crop_resize`).

    Integer arithmetic with OpenCV's 11-bit weights and its final rounding, so a box on whole
    pixels gives cv2.resize's values (exact in int32: at most 255 * 2048 * 2048 < 2^31)."""
    h, w = frames.shape[-2:]
    box = [float(crop[0]) * w, float(crop[1]) * h, float(crop[2]) * w, float(crop[3]) * h]
    snapped = [round(v) for v in box]
    exact = all(abs(v - s) < 1e-6 for v, s in zip(box, snapped)) and snapped[2] > snapped[0] and snapped[3] > snapped[1]
    if exact:
        box = [float(v) for v in snapped]
    y0, y1, wy = _axis(h, box[1], box[3], size, exact, frames.device)
    x0, x1, wx = _axis(w, box[0], box[2], size, exact, frames.device)
    one = 1 << _COEF_BITS
    x = frames.to(torch.int32)
    cols = x[..., x0] * (one - wx) + x[..., x1] * wx  # [T, c, H, S], scaled by 2048
    # The rows combine as OpenCV's vectorised vertical pass does: rows scaled to 128, products'
    # high 16 bits, then (sum + 2) >> 2.
    top, bottom = cols[..., y0, :] >> 4, cols[..., y1, :] >> 4
    out = (((top * (one - wy)[:, None]) >> 16) + ((bottom * wy[:, None]) >> 16) + 2) >> 2
    out = out.clamp_(0, 255).to(torch.uint8)
    return out.flip(-1) if flip else out


def decode_clips(clips: JpegClips, device: torch.device | str) -> torch.Tensor:
    """Return `clips` decoded on `device` (one batched `decode_jpeg` call), cropped, resized and
    flipped, each clip made by its modality (`Modality.from_device_frames`: RGB as the RGB
    loader gives it, flow as the flow loader): uint8 `[*lead, T, C, S, S]`, contiguous."""
    from torchvision.io import ImageReadMode, decode_jpeg

    device = torch.device(device)
    mod = MODALITIES[clips.modality]
    offsets = clips.offsets.tolist()
    blobs = [clips.data[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    mode = ImageReadMode.GRAY if mod.device_grey else ImageReadMode.RGB
    if torch.device(device).type == "cuda":
        # decode_jpeg decodes on its own stream into memory the caller's stream may still be
        # reading from the previous step (torchvision 0.29); let that work finish first.
        torch.cuda.current_stream(device).synchronize()
    images = decode_jpeg(blobs, mode=mode, device=device)  # J tensors [c, H, W] uint8 on the device
    n, t, planes = clips.frames.shape
    s = clips.size
    out = torch.zeros((n, t, clips.channels, s, s), dtype=torch.uint8, device=device)
    for i in range(n):
        crop, flip = clips.crops[i].tolist(), bool(clips.flips[i])
        got = [crop_resize_flip(torch.stack([images[j] for j in clips.frames[i, :, p].tolist()]), crop, flip, s)
               for p in range(planes)]  # P x [T, c, S, S]
        out[i] = mod.from_device_frames(torch.stack(got, dim=1), flip, clips.channels)
    return out.view(*clips.lead, t, clips.channels, s, s)
