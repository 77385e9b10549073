"""JPEG frames of a store: decode, read each distinct frame once, crop and resize a view.

Shared by the frame modalities (RGB colour frames, flow's grey u and v planes) and by the
dataset when it needs a frame's size from a store that records none.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import cv2
import numpy as np

from egodistill.data.views import ViewParams, crop_resize

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
