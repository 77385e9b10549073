"""RGB frames: decode a clip's JPEGs, crop/resize on uint8, jitter (training), normalise last."""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import cv2
import numpy as np
import torch

from egodistill.config import Config
from egodistill.data.modalities import Modality, Segment, segment_kwargs, store_name, writable
from egodistill.data.records import Sample
from egodistill.data.views import IMAGENET_MEAN, IMAGENET_STD, ViewParams, color_jitter, crop_resize, normalize_frames, normalize_uint8

# OpenCV decodes a 456x256 JPEG in ~0.6 ms on one core, as fast as torchvision.io.decode_jpeg
# and faster for grey flow frames (docs/data_pipeline.md); it also hands back HWC arrays that
# its resize reads directly.
cv2.setNumThreads(1)


def decoded(blobs: Iterable[bytes], *, grey: bool, what: str, numbers) -> Iterator[np.ndarray]:
    """Yield each JPEG blob decoded to uint8 `[H, W, 3]` RGB (or `[H, W]` grey), one at a time.

    `what` and `numbers` name the store/video and frame numbers in the error of a bad blob.
    """
    flag = cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR_RGB
    for b, n in zip(blobs, numbers):
        img = cv2.imdecode(np.frombuffer(b, dtype=np.uint8), flag)
        if img is None:
            raise ValueError(f"{what}: frame {int(n)} is not a decodable JPEG ({len(b)} bytes)")
        yield img


def decode_jpegs(blobs: list[bytes], *, grey: bool, what: str, numbers) -> list[np.ndarray]:
    """Return each JPEG blob decoded (see `decoded`)."""
    return list(decoded(blobs, grey=grey, what=what, numbers=numbers))


def read_unique(read, numbers: np.ndarray):
    """Return `read(unique numbers)` and the index of each requested number in the unique list.

    Views repeat frames (a short segment repeats its last frame); each is read and decoded once.
    """
    uniq, inverse = np.unique(numbers, return_inverse=True)
    return read([int(n) for n in uniq]), uniq, inverse


def decode_crop_resize(blobs: list[bytes], uniq: np.ndarray, inverse: np.ndarray, view: ViewParams, size: int, *,
                       grey: bool, what: str, out: np.ndarray | None = None) -> np.ndarray:
    """Return the view's frames `[T, S, S, 3]` (grey: `[T, S, S]`) uint8 from the JPEGs of the
    distinct frames `uniq` (frame t is `uniq[inverse[t]]`): decoded, cropped, resized, flipped.

    Each frame is resized right after it is decoded, while it is in cache. Written into `out`
    when given (each `out[t]` a contiguous image), e.g. a channel of the modality's tensor.
    """
    shape = (len(inverse), size, size) + (() if grey else (3,))
    frames = decoded(blobs, grey=grey, what=what, numbers=uniq)
    if len(inverse) == len(uniq) and np.array_equal(inverse, np.arange(len(uniq))):  # every frame once, in order
        return crop_resize(frames, view, size, out=np.empty(shape, np.uint8) if out is None else out)
    got = crop_resize(frames, view, size, out=np.empty((len(uniq),) + shape[1:], np.uint8))
    if out is None:
        return got[inverse]
    out[...] = got[inverse]
    return out


class RGBModality(Modality):
    name = "rgb"

    def channels(self, cfg: Config) -> int:
        return 3

    def open_store(self, path):
        from egodistill.data.stores import RGBStore

        return RGBStore(path)

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

    def normalize(self, x):
        """ImageNet-normalise uint8 frames `[..., 3, S, S]` (float input passes through)."""
        return normalize_uint8(x, IMAGENET_MEAN, IMAGENET_STD) if x.dtype == torch.uint8 else x
