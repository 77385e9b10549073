"""Optical flow: u and v grey JPEGs as channels, EPIC's RGB-to-flow frame mapping, the RGB
spatial pipeline, and a horizontal flip that also negates u (METHOD.md §5, §7)."""
from __future__ import annotations

import cv2
import numpy as np
import torch

from egodistill.config import Config
from egodistill.data.jpeg import decode_crop_resize, read_unique
from egodistill.data.modalities import (
    FrameGeometry, Modality, Segment, frame_span, register, segment_kwargs, source_size, spread_numbers, store_name,
    writable,
)
from egodistill.data.records import Sample
from egodistill.data.stores import FlowStore, FlowWriter
from egodistill.data.views import IMAGENET_MEAN, IMAGENET_STD, ViewParams, normalize_lut, normalize_uint8


def flow_numbers(rgb_numbers: np.ndarray, rgb_first: int, flow_first: int, stride: int, flow_count: int,
                 stored_first: int | None = None) -> np.ndarray:
    """Return the flow frame numbers of RGB frames: EPIC's ceil(rgb / stride), clamped to the store.

    Counted from each store's first frame: the k-th RGB frame (k = 1, 2, ...) maps to the
    ceil(k / stride)-th flow frame; with EPIC's 1-based numbering this is ceil(rgb / 2). The
    result is clamped to the `flow_count` stored flow frames from `stored_first` (default
    `flow_first`; the authors' EPIC layout stores only a segment's flow frames).
    """
    k = np.asarray(rgb_numbers, dtype=np.int64) - rgb_first + 1
    f = -(-k // stride) + flow_first - 1  # ceil division on integers
    lo = flow_first if stored_first is None else stored_first
    return np.clip(f, lo, lo + flow_count - 1)


def view_flow_numbers(store, sample: Sample, view: ViewParams, segment: Segment) -> np.ndarray:
    """Return the flow frame numbers `[T]` that the view's RGB frames read from `store`."""
    vid = segment.video_id
    kw = segment_kwargs(store, sample)
    # The authors' EPIC layout numbers flow frames from 1 but stores only the segment's.
    flow_first = 1 if kw else store.first_frame(vid)
    stored_first = store.first_frame(vid, **kw) if kw else flow_first
    return flow_numbers(segment.frame_numbers(view), segment.first_frame, flow_first, store.stride(vid),
                        store.num_frames(vid, **kw), stored_first=stored_first)


def flow_to_tensor(u: np.ndarray, v: np.ndarray, flip: bool, channels: int) -> torch.Tensor:
    """Return cropped uint8 flow u, v `[T, S, S]` (128 = no motion) as normalised `[T, C, S, S]`.

    A flipped view reads u -> 255 - u, so motion to the right becomes motion to the left. The
    third channel (channels == 3) is zero before normalisation, as the authors' teachers expect.
    Normalisation is ImageNet's, channel by channel, like RGB.
    """
    t, s = u.shape[0], u.shape[1]
    x = torch.empty((t, channels, s, s), dtype=torch.float32)
    dst = x.numpy()
    lut_u = normalize_lut(IMAGENET_MEAN[0], IMAGENET_STD[0])
    if flip:
        lut_u = np.ascontiguousarray(lut_u[::-1])  # value v reads as 255 - v
    lut_v = normalize_lut(IMAGENET_MEAN[1], IMAGENET_STD[1])
    u, v = np.ascontiguousarray(u, dtype=np.uint8), np.ascontiguousarray(v, dtype=np.uint8)
    # One table lookup per plane writes the normalised value in place (no float temporaries).
    for i in range(t):
        cv2.LUT(u[i], lut_u, dst=dst[i, 0])
        cv2.LUT(v[i], lut_v, dst=dst[i, 1])
    if channels == 3:
        x[:, 2].fill_(-IMAGENET_MEAN[2] / IMAGENET_STD[2])
    return x


class FlowModality(Modality):
    name = "flow"
    order = 1
    reader, writer = FlowStore, FlowWriter
    frames = True
    device_decode, device_grey = "jpeg", True

    def channels(self, cfg: Config) -> int:
        if cfg.data.flow_channels not in (2, 3):
            raise ValueError(f"data.flow_channels must be 2 or 3, got {cfg.data.flow_channels}")
        return cfg.data.flow_channels

    def geometry(self, store: FlowStore, sample: Sample) -> FrameGeometry:
        """Return the video's frames counted as RGB frames: flow frames x stride (`flow_numbers`
        maps them back)."""
        first, count = frame_span(store, sample)
        vid = sample.video_id
        size = source_size(store, sample, lambda uv: uv[0][0], grey=True)
        return FrameGeometry(first, count * store.stride(vid), store.fps(vid), size)

    span_note = " (flow frames x stride)"

    def span(self, store: FlowStore, video_id: str) -> tuple[int, int]:
        """Return (first, last) RGB frame number of the video's flow frames (flow frames x stride)."""
        first = int(store.first_frame(video_id))
        return first, first + int(store.num_frames(video_id)) * store.stride(video_id) - 1

    def verify_jpegs(self, store: FlowStore, video_id: str, k: int) -> list[tuple[str, list[int], list[bytes]]]:
        numbers = spread_numbers(store.first_frame(video_id), store.num_frames(video_id), k)
        u, v = store.read_frames(video_id, numbers)
        return [("flow frame (u)", numbers, u), ("flow frame (v)", numbers, v)]

    def load(self, store, sample: Sample, view: ViewParams, cfg: Config, train: bool, *, segment: Segment,
             out: torch.Tensor | None = None) -> torch.Tensor:
        """Return the view's flow `[T, C, S, S]` (C = data.flow_channels): uint8 (128 = no motion;
        `data.uint8_frames`, see `normalize`; written into `out` when it is contiguous) or float32
        normalised."""
        vid = segment.video_id
        kw = segment_kwargs(store, sample)
        numbers = view_flow_numbers(store, sample, view, segment)
        (us, vs), uniq, inverse = read_unique(lambda ns: store.read_frames(vid, ns, **kw), numbers)
        what = f"{store_name(store)}: video {vid}"
        size, channels = cfg.data.size, self.channels(cfg)
        if not cfg.data.uint8_frames:
            u = decode_crop_resize(us, uniq, inverse, view, size, grey=True, what=what + " (u)")  # [T, S, S] uint8
            v = decode_crop_resize(vs, uniq, inverse, view, size, grey=True, what=what + " (v)")
            return flow_to_tensor(u, v, view.flip, channels)
        # uint8: u and v resized straight into their channels. Normalised (`normalize`), this
        # equals flow_to_tensor: a flip reads u as 255 - u, the third channel is 0.
        shape = (len(numbers), channels, size, size)
        dst = writable(out, (0, 1, 2, 3), shape, torch.uint8)
        x = out if dst is not None else torch.empty(shape, dtype=torch.uint8)
        dst = x.numpy()
        decode_crop_resize(us, uniq, inverse, view, size, grey=True, what=what + " (u)", out=dst[:, 0])
        decode_crop_resize(vs, uniq, inverse, view, size, grey=True, what=what + " (v)", out=dst[:, 1])
        if view.flip:
            np.subtract(255, dst[:, 0], out=dst[:, 0])
        if channels == 3:
            dst[:, 2] = 0
        return x

    def device_jpegs(self, store, sample: Sample, view: ViewParams, cfg: Config, *,
                     segment: Segment) -> tuple[list[bytes], np.ndarray]:
        """Return the view's distinct u then v JPEGs and `[T, 2]`: each frame's u and v JPEG
        (data.decode=gpu)."""
        kw = segment_kwargs(store, sample)
        numbers = view_flow_numbers(store, sample, view, segment)
        (us, vs), uniq, inverse = read_unique(lambda ns: store.read_frames(segment.video_id, ns, **kw), numbers)
        return us + vs, np.stack([inverse, inverse + len(uniq)], axis=1)

    def from_device_frames(self, planes: torch.Tensor, flip: bool, channels: int) -> torch.Tensor:
        """Return flow `[T, C, S, S]` as `load` gives it in uint8 from grey u, v `planes`
        `[T, 2, 1, S, S]`: a mirrored view's u is 255 - u, a third channel is 0."""
        t, _, _, h, w = planes.shape
        x = torch.zeros((t, channels, h, w), dtype=torch.uint8, device=planes.device)
        x[:, :2] = planes[:, :, 0]
        if flip:
            torch.sub(255, x[:, 0], out=x[:, 0])  # a mirrored view's horizontal motion is reversed
        return x

    def normalize(self, x):
        """Normalise uint8 flow `[..., C, S, S]` as `flow_to_tensor` does (float input passes through)."""
        return normalize_uint8(x, IMAGENET_MEAN, IMAGENET_STD) if x.dtype == torch.uint8 else x


register(FlowModality())
