"""Layout: per-frame padded boxes (hands and objects) moved with the view's crop, scale and flip."""
from __future__ import annotations

import numpy as np
import torch

from egodistill.config import Config
from egodistill.data.modalities import FrameGeometry, Modality, Segment, frame_span, register
from egodistill.data.records import Sample
from egodistill.data.stores import LayoutStore, LayoutWriter
from egodistill.data.views import ViewParams, transform_boxes

KEYS = ("boxes", "category", "score", "side", "state", "mask")
SIDE_NONE, STATE_NONE = 2, 5
_PAD = {"boxes": 0.0, "category": 0, "score": 0.0, "side": SIDE_NONE, "state": STATE_NONE}


def _fit(a: np.ndarray, n: int, pad) -> np.ndarray:
    """Return `a` `[T, N0, ...]` cut or padded (with `pad`) to `[T, n, ...]`."""
    if a.shape[1] >= n:
        return a[:, :n]
    out = np.full((a.shape[0], n) + a.shape[2:], pad, dtype=a.dtype)
    out[:, : a.shape[1]] = a
    return out


def layout_view(raw: dict[str, np.ndarray], view: ViewParams, max_boxes: int) -> dict[str, torch.Tensor]:
    """Return the store's per-frame boxes `raw` as seen through `view`.

    `raw`: boxes [T,N,4] (normalised x1,y1,x2,y2 of the source frame), category, score, side,
    state, valid [T,N]. Returns boxes [T,M,4] float32 normalised to the S x S view, category /
    side / state [T,M] int64, score [T,M] float32, mask [T,M] bool (M = max_boxes). Boxes that
    leave the view are masked out and reset to padding. A flip mirrors the boxes and swaps the
    hand side (left <-> right), as the flipped image shows the other hand.
    """
    valid = _fit(np.asarray(raw["valid"], dtype=bool), max_boxes, False)
    boxes, keep = transform_boxes(_fit(np.asarray(raw["boxes"], dtype=np.float32), max_boxes, 0.0), valid, view)
    out = {"boxes": torch.from_numpy(boxes)}
    for k, dtype in (("category", np.int64), ("score", np.float32), ("side", np.int64), ("state", np.int64)):
        a = _fit(np.asarray(raw[k], dtype=dtype), max_boxes, _PAD[k]).copy()
        a[~keep] = _PAD[k]
        if k == "side" and view.flip:
            a = np.where(a == 0, 1, np.where(a == 1, 0, a))
        out[k] = torch.from_numpy(a)
    out["mask"] = torch.from_numpy(keep)
    return out


class LayoutModality(Modality):
    name = "layout"
    order = 3
    reader, writer = LayoutStore, LayoutWriter
    frames = True
    reads = "layout"
    device_decode = "host"  # data.decode=gpu: loaded as with decode=cpu (no JPEGs)

    def channels(self, cfg: Config) -> int:
        return 4  # box coordinates per detection

    def geometry(self, store: LayoutStore, sample: Sample) -> FrameGeometry:
        """Return the video's frames; no frame rate, and boxes are normalised: the frame's aspect is unknown."""
        return FrameGeometry(*frame_span(store, sample), 0.0, (1, 1))

    def example_input(self, cfg: Config, frames: int, size: int, batch: int) -> dict[str, torch.Tensor]:
        """Return a random layout `{key: [batch, frames, data.max_boxes, ...]}` (`size` unused)."""
        from egodistill.models.stlt import example_layout

        return example_layout(batch, frames, cfg.data.max_boxes)

    def load(self, store, sample: Sample, view: ViewParams, cfg: Config, train: bool, *, segment: Segment,
             out=None) -> dict[str, torch.Tensor]:
        """Return the view's layout: a dict of `[T, max_boxes, ...]` tensors (see `layout_view`); `out` is not used."""
        numbers = segment.frame_numbers(view)
        raw = store.read(segment.video_id, [int(n) for n in numbers])
        return layout_view(raw, view, cfg.data.max_boxes)


register(LayoutModality())
