"""RGB frames: decode a clip's JPEGs, crop/resize on uint8, jitter (training), normalise last."""
from __future__ import annotations

import numpy as np
import torch

from egodistill.config import Config
from egodistill.data.jpeg import decode_crop_resize, read_unique
from egodistill.data.modalities import (
    FrameGeometry, Modality, Segment, frame_span, register, segment_kwargs, source_size, spread_numbers, store_name,
    writable,
)
from egodistill.data.records import Sample
from egodistill.data.stores import RGBStore, RGBWriter
from egodistill.data.views import IMAGENET_MEAN, IMAGENET_STD, ViewParams, color_jitter, normalize_frames, normalize_uint8


class RGBModality(Modality):
    name = "rgb"
    order = 0
    reader, writer = RGBStore, RGBWriter
    frames = True
    device_decode = "jpeg"

    def channels(self, cfg: Config) -> int:
        return 3

    def geometry(self, store: RGBStore, sample: Sample) -> FrameGeometry:
        first, count = frame_span(store, sample)
        return FrameGeometry(first, count, store.fps(sample.video_id), source_size(store, sample, lambda b: b[0], grey=False))

    def verify_jpegs(self, store: RGBStore, video_id: str, k: int) -> list[tuple[str, list[int], list[bytes]]]:
        numbers = spread_numbers(store.first_frame(video_id), store.num_frames(video_id), k)
        return [("frame", numbers, store.read_frames(video_id, numbers))]

    def load(self, store, sample: Sample, view: ViewParams, cfg: Config, train: bool, *, segment: Segment,
             out: torch.Tensor | None = None) -> torch.Tensor:
        """Return the view's frames `[T, 3, S, S]`: uint8 (`data.uint8_frames`, see `normalize`) or
        float32 ImageNet-normalised (colour-jittered training views, or uint8_frames off).
        uint8 frames are written into `out` when it is a channels-first view of channels-last memory."""
        numbers = segment.frame_numbers(view)
        kw = segment_kwargs(store, sample)
        blobs, uniq, inverse = read_unique(lambda ns: store.read_frames(segment.video_id, ns, **kw), numbers)
        size = cfg.data.size
        as_uint8 = cfg.data.uint8_frames and not (train and cfg.data.color_jitter > 0)
        dst = writable(out, (0, 2, 3, 1), (len(numbers), size, size, 3), torch.uint8) if as_uint8 else None
        frames = decode_crop_resize(blobs, uniq, inverse, view, size, grey=False, out=dst,
                                    what=f"{store_name(store)}: video {segment.video_id}")  # [T, S, S, 3] uint8
        if as_uint8:
            # A channels-first view of the channels-last frames, no copy: collate stacks it as it is
            # laid out, and normalize transposes while it normalises, on the device.
            return out if dst is not None else torch.from_numpy(frames).permute(0, 3, 1, 2)  # [T, 3, S, S] uint8
        if train and cfg.data.color_jitter > 0:
            x = normalize_frames(frames, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # [T, 3, S, S] in [0, 1]
            x = color_jitter(x, view.color_seed, cfg.data.color_jitter)
            mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
            return (x - mean) / std
        return normalize_frames(frames, IMAGENET_MEAN, IMAGENET_STD)

    def device_jpegs(self, store, sample: Sample, view: ViewParams, cfg: Config, *,
                     segment: Segment) -> tuple[list[bytes], np.ndarray]:
        """Return the view's distinct JPEGs and `[T, 1]`: the JPEG of each frame (data.decode=gpu)."""
        kw = segment_kwargs(store, sample)
        numbers = segment.frame_numbers(view)
        blobs, _, inverse = read_unique(lambda ns: store.read_frames(segment.video_id, ns, **kw), numbers)
        return blobs, inverse[:, None]

    def from_device_frames(self, planes: torch.Tensor, flip: bool, channels: int) -> torch.Tensor:
        """Return the frames `[T, 3, S, S]` of `planes` `[T, 1, 3, S, S]` (already mirrored when `flip`)."""
        return planes[:, 0]

    def normalize(self, x):
        """ImageNet-normalise uint8 frames `[..., 3, S, S]` (float input passes through)."""
        return normalize_uint8(x, IMAGENET_MEAN, IMAGENET_STD) if x.dtype == torch.uint8 else x


register(RGBModality())
