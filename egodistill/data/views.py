"""One view of one sample, shared by every modality (consistent teaching, METHOD.md §5).

A `ViewParams` holds everything needed to reproduce a view: the frame offsets, the scale, the
crop box, the horizontal flip and the colour-jitter seed. The crop box is in normalised
coordinates of the source frame (x1, y1, x2, y2 in [0, 1]), so RGB frames, flow frames of
another resolution and layout boxes (already normalised) are cut at the same place.

Training views resize the short side to `S*u`, u ~ U(scale_range), and take a random `S x S`
crop; the drawn box is snapped to whole source pixels so that the crop of a frame at the
source resolution is an exact slice followed by one resize. Test views resize the short side to
`S` and take the centre crop (1 crop) or the start/centre/end of the long side (3 crops).
"""
from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from egodistill.config import DataConfig
from egodistill.data.sampling import sample_frame_indices

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Offsets of the fields in a view's array form; the frame offsets follow.
_HEAD = 7  # scale, x1, y1, x2, y2, flip, color_seed


@dataclass
class ViewParams:
    """One view of one sample; everything needed to reproduce it for every modality."""

    frames: np.ndarray  # [T] int64, 0-based offsets into the segment
    scale: float  # short side of the resized frame / S (1.0 at test time)
    crop: tuple[float, float, float, float]  # (x1, y1, x2, y2), normalised to the source frame
    flip: bool
    color_seed: int

    def to_array(self) -> np.ndarray:
        """Return the view as a float64 vector `[7 + T]`: scale, crop (4), flip, colour seed, frames."""
        head = [self.scale, *self.crop, float(self.flip), float(self.color_seed)]
        return np.concatenate([np.asarray(head, dtype=np.float64), np.asarray(self.frames, dtype=np.float64)])

    @classmethod
    def from_array(cls, a: np.ndarray | torch.Tensor) -> "ViewParams":
        """Return the view stored by `to_array` (the inverse; exact for every field)."""
        a = np.asarray(a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a, dtype=np.float64)
        if a.ndim != 1 or a.shape[0] < _HEAD + 1:
            raise ValueError(f"a view array must be a vector of at least {_HEAD + 1} values, got shape {a.shape}")
        return cls(
            frames=np.rint(a[_HEAD:]).astype(np.int64),
            scale=float(a[0]),
            crop=(float(a[1]), float(a[2]), float(a[3]), float(a[4])),
            flip=bool(a[5] > 0.5),
            color_seed=int(round(a[6])),
        )

    def subsample(self, step: int) -> "ViewParams":
        """Return the same view on every `step`-th frame (a student that sees fewer frames)."""
        if step < 1:
            raise ValueError(f"frame step must be >= 1, got {step}")
        return ViewParams(self.frames[::step].copy(), self.scale, self.crop, self.flip, self.color_seed)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ViewParams):
            return NotImplemented
        return np.array_equal(self.to_array(), other.to_array())


def _check_hw(src_hw: tuple[int, int]) -> tuple[int, int]:
    h, w = int(src_hw[0]), int(src_hw[1])
    if h < 1 or w < 1:
        raise ValueError(f"source frame size must be positive (height, width), got {src_hw}")
    return h, w


def draw_train_view(n_frames: int, cfg: DataConfig, rng: np.random.Generator, src_hw: tuple[int, int]) -> ViewParams:
    """Return a random training view of a segment of `n_frames` frames of size `src_hw` (h, w)."""
    h, w = _check_hw(src_hw)
    frames = sample_frame_indices(
        n_frames, cfg.num_frames, sampler=cfg.sampler, stride=cfg.stride, clips=1, train=True, rng=rng
    )[0]
    lo, hi = cfg.scale_range
    u = float(rng.uniform(lo, hi))
    short = min(h, w)
    # The S x S crop of a frame resized to short side S*u covers short/u source pixels; snap to
    # whole pixels so the RGB crop is an exact slice.
    side = int(min(short, max(1, round(short / u))))
    x0 = int(rng.integers(0, w - side + 1))
    y0 = int(rng.integers(0, h - side + 1))
    flip = bool(cfg.hflip and rng.random() < 0.5)
    color_seed = int(rng.integers(0, 2**31 - 1))
    return ViewParams(
        frames=frames,
        scale=short / side,
        crop=(x0 / w, y0 / h, (x0 + side) / w, (y0 + side) / h),
        flip=flip,
        color_seed=color_seed,
    )


def test_views(n_frames: int, cfg: DataConfig, src_hw: tuple[int, int]) -> list[ViewParams]:
    """Return the `test_clips x test_crops` test views, clip-major, deterministic.

    The short side becomes S (the crop side equals the short side); 1 crop = centre, 3 crops =
    start, centre and end of the long side.
    """
    h, w = _check_hw(src_hw)
    if cfg.test_crops not in (1, 3):
        raise ValueError(f"data.test_crops must be 1 or 3, got {cfg.test_crops}")
    clips = sample_frame_indices(
        n_frames, cfg.num_frames, sampler=cfg.sampler, stride=cfg.stride, clips=cfg.test_clips, train=False
    )
    side = min(h, w)
    long_len = max(h, w)
    starts = [(long_len - side) // 2] if cfg.test_crops == 1 else [0, (long_len - side) // 2, long_len - side]
    views = []
    for frames in clips:
        for s in starts:
            x0, y0 = (s, 0) if w >= h else (0, s)
            crop = (x0 / w, y0 / h, (x0 + side) / w, (y0 + side) / h)
            views.append(ViewParams(frames=frames.copy(), scale=1.0, crop=crop, flip=False, color_seed=0))
    return views


# --------------------------------------------------------------------------------------------
# Applying a view
# --------------------------------------------------------------------------------------------


def crop_resize(frames: Iterable[np.ndarray], view: ViewParams, size: int, out: np.ndarray | None = None) -> np.ndarray:
    """Return the view's crop of each uint8 frame resized to `size x size`, flipped if the view says so.

    `frames`: T arrays `[H, W, C]` or `[H, W]` uint8, all the same size; a list, or any iterable
    when `out` is given (a generator that decodes each frame as it is asked for: the frame is
    still in cache when it is resized). Returns `[T, S, S, C]` (or `[T, S, S]`) uint8: `out`
    itself when given (each `out[i]` must be a contiguous image). Bilinear, half-pixel centres.
    When the box falls on whole pixels of this resolution (always for the source resolution)
    the crop is a slice plus one resize; otherwise an affine warp samples the exact sub-pixel box.
    """
    box = m = None
    n = 0
    for i, f in enumerate(frames):
        if box is None:
            h, w = f.shape[:2]
            x1, y1, x2, y2 = view.crop[0] * w, view.crop[1] * h, view.crop[2] * w, view.crop[3] * h
            box = [round(v) for v in (x1, y1, x2, y2)]
            exact = all(abs(v - s) < 1e-6 for v, s in zip((x1, y1, x2, y2), box)) and box[2] > box[0] and box[3] > box[1]
            if not exact:
                sx, sy = (x2 - x1) / size, (y2 - y1) / size
                # Destination pixel (j, i) samples source (sx*j + x1 + sx/2 - 1/2, ...) in pixel-centre coordinates.
                m = np.array([[sx, 0.0, x1 + 0.5 * sx - 0.5], [0.0, sy, y1 + 0.5 * sy - 0.5]], dtype=np.float64)
            if out is None:
                out = np.empty((len(frames), size, size) + f.shape[2:], dtype=np.uint8)  # type: ignore[arg-type]
            elif (out.dtype != np.uint8 or out.shape[1:] != (size, size) + f.shape[2:]
                  or not all(o.flags.c_contiguous for o in out)):
                # OpenCV would silently write a new array instead of a mismatched `out`.
                raise ValueError(f"out must be uint8 [T, {size}, {size}{''.join(f', {c}' for c in f.shape[2:])}] "
                                 f"with contiguous frames, got {out.dtype} {list(out.shape)}")
        elif f.shape[:2] != (h, w):
            raise ValueError(f"frame {i} has size {f.shape[:2]}, expected {(h, w)} like the clip's first frame")
        if i >= len(out):
            raise ValueError(f"more frames than the output's {len(out)}")
        if m is None:
            cv2.resize(f[box[1]:box[3], box[0]:box[2]], (size, size), dst=out[i], interpolation=cv2.INTER_LINEAR)
        else:
            cv2.warpAffine(f, m, (size, size), dst=out[i], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REPLICATE)
        if view.flip:
            cv2.flip(out[i], 1, dst=out[i])
        n += 1
    if box is None:
        raise ValueError("no frames to crop")
    if n != len(out):
        raise ValueError(f"{n} frames for an output of {len(out)}")
    return out


def normalize_lut(mean: float, std: float) -> np.ndarray:
    """Return the float32 table `[256]` of `(v/255 - mean) / std` for every uint8 value v."""
    key = (float(mean), float(std))
    if key not in _LUTS:
        _LUTS[key] = ((np.arange(256, dtype=np.float64) / 255.0 - key[0]) / key[1]).astype(np.float32)
    return _LUTS[key]


_LUTS: dict[tuple[float, float], np.ndarray] = {}


def normalize_uint8(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Return frames `[..., C, S, S]` of 0..255 values (uint8, or float) as float32
    `(x/255 - mean) / std` per channel, contiguous, on x's device.

    Equal to `normalize_frames`' table lookup up to float rounding.
    """
    scale, shift = _affine(tuple(mean), tuple(std), x.shape[-3], x.device)
    # One pass: read uint8 in whatever layout the batch has (channels-last RGB), write a
    # contiguous float32 tensor.
    out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    return torch.addcmul(shift, x, scale, out=out)


@functools.lru_cache(maxsize=32)
def _affine(mean: tuple, std: tuple, c: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel scale and shift `[C, 1, 1]` of `normalize_uint8`, built once per device: a
    fresh host-to-device copy of them every training step would wait for the accelerator."""
    scale = torch.tensor([1.0 / (255.0 * s) for s in std[:c]], dtype=torch.float32).view(c, 1, 1)
    shift = torch.tensor([-m / s for m, s in zip(mean[:c], std[:c])], dtype=torch.float32).view(c, 1, 1)
    return scale.to(device), shift.to(device)


def normalize_frames(frames: np.ndarray | torch.Tensor, mean, std) -> torch.Tensor:
    """Return uint8 frames `[T, S, S, C]` as float32 `[T, C, S, S]`: `(x/255 - mean) / std` per channel."""
    if isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim in (3, 4):
        # One pass per plane: a 256-entry table lookup writes the normalised value straight into
        # its CHW place (~2x faster than convert, multiply, add on the whole clip).
        frames = np.ascontiguousarray(frames)
        t, h, w = frames.shape[:3]
        c = frames.shape[3] if frames.ndim == 4 else 1
        out = torch.empty((t, c, h, w), dtype=torch.float32)
        dst = out.numpy()
        luts = [normalize_lut(m, s) for m, s in zip(mean[:c], std[:c])]
        for i in range(t):
            planes = cv2.split(frames[i]) if c > 1 else (frames[i],)
            for k in range(c):
                cv2.LUT(planes[k], luts[k], dst=dst[i, k])
        return out
    t = torch.as_tensor(frames)
    if t.ndim == 3:
        t = t.unsqueeze(-1)
    return normalize_uint8(t.permute(0, 3, 1, 2), mean, std)  # one pass: HWC in, contiguous CHW float out


def color_jitter(x: torch.Tensor, seed: int, strength: float) -> torch.Tensor:
    """Return RGB frames `x` `[T, 3, S, S]` in [0, 1] with brightness, contrast and saturation jitter.

    Factors are drawn once per view from U(1 - strength, 1 + strength) (clamped at 0) with a
    generator seeded by `seed`, and applied to every frame, so the clip stays coherent in time.
    """
    if strength <= 0:
        return x
    g = torch.Generator().manual_seed(int(seed))
    b, c, s = (1.0 + strength * (2.0 * torch.rand(3, generator=g) - 1.0)).clamp_min(0.0).tolist()
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(1, 3, 1, 1)  # ITU-R 601 luma, as torchvision
    x = (x * b).clamp_(0, 1)
    grey_mean = (x * weights).sum(1, keepdim=True).mean(dim=(2, 3), keepdim=True)  # [T,1,1,1]
    x = ((x - grey_mean) * c + grey_mean).clamp_(0, 1)
    grey = (x * weights).sum(1, keepdim=True)  # [T,1,S,S]
    return ((x - grey) * s + grey).clamp_(0, 1)


def transform_boxes(boxes: np.ndarray, valid: np.ndarray, view: ViewParams) -> tuple[np.ndarray, np.ndarray]:
    """Return boxes moved into the view's output frame, and their validity.

    `boxes` `[..., 4]` (x1, y1, x2, y2) normalised to the source frame; `valid` `[...]` bool.
    Output boxes are normalised to the `S x S` view: cropped, rescaled, flipped with the frames,
    clipped to [0, 1]; boxes left with no area are dropped (valid False, box zeroed).
    """
    cx1, cy1, cx2, cy2 = view.crop
    out = np.empty_like(boxes, dtype=np.float32)
    out[..., 0] = (boxes[..., 0] - cx1) / (cx2 - cx1)
    out[..., 2] = (boxes[..., 2] - cx1) / (cx2 - cx1)
    out[..., 1] = (boxes[..., 1] - cy1) / (cy2 - cy1)
    out[..., 3] = (boxes[..., 3] - cy1) / (cy2 - cy1)
    np.clip(out, 0.0, 1.0, out=out)
    if view.flip:
        out[..., [0, 2]] = 1.0 - out[..., [2, 0]]
    keep = valid & (out[..., 2] > out[..., 0]) & (out[..., 3] > out[..., 1])
    out[~keep] = 0.0
    return out, keep
