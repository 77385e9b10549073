"""One loader per modality and their registry.

A modality turns `(store, Sample, ViewParams, cfg, train)` into a tensor `[T, C, S, S]`
(float32, or uint8 frames that `Modality.normalize` turns into the model's float input; layout:
a dict of `[T, N, ...]` tensors). The dataset resolves where the sample's
frames are once (`Segment`: video, first frame, length, frame rate, frame size) and passes it to
every modality, so frame numbers and times agree across modalities.

A modality is one module of this package: a `Modality` subclass that declares its store reader
and writer, its frame geometry and its loader, registered with `register(...)` when the module
is imported. Every module of the package is imported with it, so adding a modality is adding a
module (docs/architecture.md, "Adding a modality").
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from egodistill.config import Config
from egodistill.data.jpeg import decode_jpegs
from egodistill.data.records import Sample
from egodistill.data.views import ViewParams


@dataclass(frozen=True)
class Segment:
    """Where a sample's frames are, resolved against the stores.

    `start_frame`: store number of the segment's first frame (offset 0 of a view); `num_frames`:
    frames in the segment; `first_frame`: the video's first frame number (time 0); `fps`: RGB
    frames per second; `src_hw`: (height, width) of the source RGB frames.
    """

    video_id: str
    start_frame: int
    num_frames: int
    first_frame: int
    fps: float
    src_hw: tuple[int, int]

    def frame_numbers(self, view: ViewParams) -> np.ndarray:
        """Return the store frame numbers `[T]` of the view's frames."""
        return self.start_frame + np.asarray(view.frames, dtype=np.int64)


@dataclass(frozen=True)
class FrameGeometry:
    """A video's frames in a modality's store, counted as RGB frames: `first_frame` (the number
    of its first frame; the authors' EPIC layout: 1), `num_frames` (the video's, or that layout's
    segment's, frames), `fps` (0.0 when the store records none), `src_hw` ((height, width) of
    the source frames; (1, 1) when unknown, e.g. normalised boxes)."""

    first_frame: int
    num_frames: int
    fps: float
    src_hw: tuple[int, int]


def frame_span(store: Any, sample: Sample) -> tuple[int, int]:
    """Return (first frame number, stored frames) of `sample`'s video in a store of frames."""
    if getattr(store, "layout", "ours") == "epic":
        # The authors' EPIC layout: EPIC numbers frames from 1; the store holds this segment.
        return 1, int(store.num_frames(sample.video_id, segment_id=sample.id))
    return int(store.first_frame(sample.video_id)), int(store.num_frames(sample.video_id))


def source_size(store: Any, sample: Sample, first_blob: Callable[[Any], bytes], *, grey: bool) -> tuple[int, int]:
    """Return (height, width) of the video's JPEG frames in `store`: recorded by our stores; the
    authors' record none, so their first frame is decoded (`first_blob` picks its JPEG from
    what `store.read_frames` returns)."""
    try:
        return tuple(int(v) for v in store.frame_size(sample.video_id))
    except (AttributeError, KeyError):
        kw = segment_kwargs(store, sample)
        number = store.first_frame(sample.video_id, **kw)
        blob = first_blob(store.read_frames(sample.video_id, [number], **kw))
        img = decode_jpegs([blob], grey=grey, what=f"{store}: video {sample.video_id}", numbers=[number])[0]
        return int(img.shape[0]), int(img.shape[1])


def spread_numbers(first: int, count: int, k: int) -> list[int]:
    """Return up to `k` frame numbers spread over `first .. first + count - 1`: the first, the last
    and evenly between (what `prepare verify` decodes of a video)."""
    return sorted({int(x) for x in np.linspace(first, first + count - 1, num=min(k, count))})


def store_name(store: Any) -> str:
    """Return the file a store reads, for error messages."""
    return str(getattr(store, "path", store))


def segment_kwargs(store: Any, sample: Sample) -> dict[str, str]:
    """Return the keyword that frame reads of `store` need: the authors' EPIC layout keeps each
    segment's frames apart (`/<video>/<narration_id>`), so reads name the sample; ours does not."""
    return {"segment_id": sample.id} if getattr(store, "layout", "ours") == "epic" else {}


class DeviceClips:
    """What a loader leaves for the training device to finish (data.decode=gpu): clips of one
    modality in a compact form, made into the batch tensor the CPU loader gives by `decode`.

    Subclasses (dataclasses of tensors, so they cross worker processes) implement `stack` and
    `decode`; `lead` is the clips' leading dimensions (batch, views).
    """

    lead: tuple[int, ...]

    @classmethod
    def stack(cls, parts: list[DeviceClips]) -> DeviceClips:
        """Return the clips of `parts` (equal leads) with a new leading dimension `len(parts)`."""
        raise NotImplementedError

    def decode(self, device: torch.device | str) -> torch.Tensor:
        """Return the clips as the CPU loader's batch tensor `[*lead, ...]`, made on `device`."""
        raise NotImplementedError


class Modality:
    """A modality: its store, its loader and how models read it. Subclasses set `name`, `reader`
    (and `writer`) and implement `channels` and `load`."""

    name: str = ""
    order: int = 100  # place in `MODALITIES`: error messages list them, the frame geometry prefers the first
    reads: str = "clips"  # what its models take: "clips" [..., T, C, S, S] or "layout" (a dict of boxes)
    reader: type | None = None  # store reader: reader(path, **kw), lazy and read-only (`stores.Store`)
    writer: type | None = None  # store writer: a context manager building the store (`stores.StoreWriter`)
    # Its store numbers a video's frames as the RGB frames are numbered, so `geometry` can tell
    # where a sample's frames are (the dataset asks the first such modality it has a store of).
    frames: bool = False
    span_note: str = ""  # how `span` counts, where it is not plain frame numbers (`prepare verify`'s messages)
    # How data.decode=gpu loads it (egodistill/data/gpu_decode.py): "jpeg" ships each view's
    # JPEGs undecoded (`device_jpegs`), decoded (as RGB, or grey with `device_grey`), cropped,
    # resized and flipped on the device and made into its clip there (`from_device_frames`);
    # "device" ships what its own `device_load` returns (a `DeviceClips`: audio ships waveforms
    # and computes its spectrograms on the device); "host" loads as with data.decode=cpu;
    # "" (undeclared) is refused.
    device_decode: str = ""
    device_grey: bool = False

    def channels(self, cfg: Config) -> int:
        """Return C, the input channels of this modality's model: of `normalize`'s output
        `[..., T, C, S, S]` (a loader may ship fewer, e.g. audio's one)."""
        raise NotImplementedError

    def open_store(self, path: str, **kwargs: Any) -> Any:
        """Return the store reader for `path` (lazy, read-only); `kwargs` go to `reader`."""
        if self.reader is None:
            raise NotImplementedError(f"modality {self.name!r} declares no store reader")
        return self.reader(path, **kwargs)

    def geometry(self, store: Any, sample: Sample) -> FrameGeometry:
        """Return the frames of `sample`'s video in `store` (modalities with `frames`)."""
        raise NotImplementedError(f"modality {self.name!r} does not number frames")

    def span(self, store: Any, video_id: str) -> tuple[int, int]:
        """Return (first, last) of what our layout of `store` holds of `video_id`, in the unit of
        `check_segment`: RGB frame numbers for modalities with `frames`."""
        first = int(store.first_frame(video_id))
        return first, first + int(store.num_frames(video_id)) - 1

    def check_segment(self, store: Any, video_id: str, start: int, stop: int, stop_timestamp: str | None) -> str | None:
        """Return what keeps `store` from covering the annotated segment (RGB frames `start..stop`,
        ending at `stop_timestamp` when the annotations are timed), or None when it covers it."""
        lo, hi = self.span(store, video_id)
        if start < lo or stop > hi:
            return f"video {video_id} holds frames {lo}..{hi}{self.span_note}, the segment needs {start}..{stop}"
        return None

    def verify_jpegs(self, store: Any, video_id: str, k: int) -> list[tuple[str, list[int], list[bytes]]]:
        """Return (what, frame numbers, JPEG bytes) of up to `k` frames spread over `video_id`, for
        `prepare verify` to decode; [] for a store without JPEGs."""
        return []

    def load(self, store: Any, sample: Sample, view: ViewParams, cfg: Config, train: bool, *, segment: Segment,
             out: torch.Tensor | None = None) -> Any:
        """Return the modality's input for one view of `sample`.

        `out`, when given, is where the caller would like the result: a tensor shaped and laid
        out like an earlier result of this modality (a slot of a batch buffer). A loader may
        write there and return it, or ignore it; the caller copies what it gets where needed.
        """
        raise NotImplementedError

    def device_jpegs(self, store: Any, sample: Sample, view: ViewParams, cfg: Config, *,
                     segment: Segment) -> tuple[list[bytes], np.ndarray]:
        """(device_decode "jpeg") Return one view's distinct JPEGs and which of them each frame
        reads: int `[T, P]`, the JPEG of plane p of frame t (P = 1 for one image a frame)."""
        raise NotImplementedError(f"modality {self.name!r} ships no JPEGs to the device")

    def device_load(self, store: Any, sample: Sample, view: ViewParams, cfg: Config, train: bool, *,
                    segment: Segment) -> DeviceClips:
        """(device_decode "device") Return one view's input as `DeviceClips` (lead `()`) whose
        `decode` gives what `load` gives, with a leading dimension of one clip."""
        raise NotImplementedError(f"modality {self.name!r} leaves no work to the device")

    def from_device_frames(self, planes: torch.Tensor, flip: bool, channels: int) -> torch.Tensor:
        """(device_decode "jpeg") Return one view's clip, uint8 `[T, channels, S, S]` as `load` gives
        it with data.uint8_frames, made on the device from its JPEGs decoded, cropped, resized and
        (when `flip`) mirrored there: `planes` uint8 `[T, P, c, S, S]` (c = 3, or 1 with `device_grey`)."""
        raise NotImplementedError(f"modality {self.name!r} ships no JPEGs to the device")

    def normalize(self, x: Any) -> Any:
        """Return the model-ready input of a batch entry `[..., T, C, S, S]` of this modality.

        Frame modalities may load uint8 (`data.uint8_frames`) and normalise here, where
        `engine.inputs.model_input` calls it: on the accelerator, after a host-to-device copy
        4x smaller than float32. Inputs that are already float pass through unchanged.
        """
        return x

    def example_input(self, cfg: Config, frames: int, size: int, batch: int) -> Any:
        """Return a random model input of this modality, `[batch, frames, C, size, size]` (e.g. to
        measure a model's cost)."""
        g = torch.Generator().manual_seed(0)
        return torch.randn(batch, frames, self.channels(cfg), size, size, generator=g)

    def collate(self, items: list[Any]) -> Any:
        """Return per-view items stacked along a new first dimension."""
        if len(items) == 1:  # one training view: a view of the tensor, no copy
            if isinstance(items[0], dict):
                return {k: t.unsqueeze(0) for k, t in items[0].items()}
            return items[0].unsqueeze(0)
        if isinstance(items[0], dict):
            return {k: stack_keep_layout([it[k] for it in items]) for k in items[0]}
        return stack_keep_layout(items)


def stack_keep_layout(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Return `torch.stack(tensors)` laid out in memory as the tensors are: `[N, *shape]`.

    Loaders hand out views (an RGB clip is a channels-first view of channels-last frames);
    `torch.stack` would transpose every element into a contiguous batch, a slow strided copy
    for uint8. Stacked in their own layout, each tensor is one memcpy, and the transposition
    happens once, fused into the normalisation on the device (`views.normalize_uint8`).
    Tensors that already are the consecutive slices of one buffer (`MultimodalDataset.__getitems__`
    wrote them there) are returned as that buffer, without a copy.
    """
    first = tensors[0]
    whole = _as_one_buffer(tensors)
    if whole is not None:
        return whole
    if first.is_contiguous() or any(t.stride() != first.stride() for t in tensors):
        return torch.stack(tensors)
    out = empty_stack_like(first, len(tensors))
    for i, t in enumerate(tensors):
        out[i].copy_(t)
    return out


def empty_stack_like(t: torch.Tensor, n: int) -> torch.Tensor:
    """Return an uninitialised `[n, *t.shape]` tensor whose slices are laid out in memory as `t` is."""
    order = sorted(range(t.dim()), key=lambda d: -t.stride(d))  # memory order, outermost first
    out = torch.empty((n, *(t.shape[d] for d in order)), dtype=t.dtype)
    return out.permute(0, *(1 + order.index(d) for d in range(t.dim())))  # [n, *shape]


def same_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Return True when `a` and `b` are the same elements of the same memory (the strides of
    dimensions of size 1 do not matter)."""
    if a.dtype != b.dtype or a.shape != b.shape or a.data_ptr() != b.data_ptr():
        return False
    if a.is_conj() != b.is_conj() or a.is_neg() != b.is_neg():  # lazily conjugated / negated views
        return False
    return all(sa == sb for n, sa, sb in zip(a.shape, a.stride(), b.stride()) if n > 1)


def _is_dense(t: torch.Tensor) -> bool:
    """Return True when `t` covers a gap-free block of memory (a permutation of a contiguous tensor)."""
    expected = 1
    for d in sorted(range(t.dim()), key=lambda d: t.stride(d)):
        if t.shape[d] == 1:
            continue
        if t.stride(d) != expected:
            return False
        expected *= t.shape[d]
    return True


def _as_one_buffer(tensors: list[torch.Tensor]) -> torch.Tensor | None:
    """Return `[N, *shape]` viewing the memory of `tensors` when they are consecutive, equally laid
    out, gap-free slices of one buffer (tensor i at offset i * numel); else None."""
    first = tensors[0]
    n = first.numel()
    # Dense slices only: slots of the returned batch must not overlap (a write to one would
    # change another).
    if len(tensors) < 2 or n == 0 or not _is_dense(first) or first.is_conj() or first.is_neg():
        return None
    ptr, offset = first.untyped_storage().data_ptr(), first.storage_offset()
    for i, t in enumerate(tensors):
        if (t.untyped_storage().data_ptr() != ptr or t.storage_offset() != offset + i * n or t.dtype != first.dtype
                or t.shape != first.shape or t.stride() != first.stride() or t.is_conj() or t.is_neg()):
            return None
    # Every tensor lies in the storage with the same extent, so this view is in bounds.
    return first.as_strided((len(tensors), *first.shape), (n, *first.stride()), offset)


def writable(out: torch.Tensor | None, perm: tuple[int, ...], shape: tuple[int, ...], dtype: torch.dtype) -> np.ndarray | None:
    """Return `out.permute(perm)` as a numpy array a loader can write its result into, when it is
    C-contiguous, of `shape` and `dtype`; else None (the loader allocates its own)."""
    if out is None or out.dtype != dtype:
        return None
    arr = out.permute(*perm)
    if tuple(arr.shape) != tuple(shape) or not arr.is_contiguous():
        return None
    return arr.numpy()


MODALITIES: dict[str, Modality] = {}  # name -> modality, by `order`


def register(modality: Modality) -> Modality:
    """Add `modality` to `MODALITIES` (in `order`) and return it; a name registers once."""
    if not modality.name:
        raise ValueError(f"{type(modality).__name__} has no name")
    if modality.name in MODALITIES:
        raise ValueError(f"modality {modality.name!r} is already registered ({type(MODALITIES[modality.name]).__name__})")
    entries = sorted([*MODALITIES.values(), modality], key=lambda m: m.order)
    MODALITIES.clear()  # the same dict: modules hold it by name
    MODALITIES.update((m.name, m) for m in entries)
    return modality


def unregister(name: str) -> Modality:
    """Remove modality `name` from `MODALITIES` and return it (e.g. a test's own modality)."""
    return MODALITIES.pop(name)


def get_modality(name: str) -> Modality:
    """Return the registered modality `name`, or raise naming the valid ones."""
    if name not in MODALITIES:
        raise KeyError(f"unknown modality {name!r}: expected one of {', '.join(MODALITIES)}")
    return MODALITIES[name]


def _import_modules() -> None:
    """Import every module of this package: each registers its modality."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


_import_modules()
