"""HDF5 stores: one file per modality, one entry per video, frames keyed by the source's numbering.

Our layout (docs/stores.md), marked by the root attribute `egodistill_format` = <modality>:

| file        | entry                                   | element                              | attributes |
|-------------|-----------------------------------------|--------------------------------------|------------|
| `rgb.h5`    | dataset `/<video>`                      | JPEG bytes (vlen uint8), one a frame | fps, height, width, first_frame |
| `flow.h5`   | datasets `/<video>/u`, `/<video>/v`     | grey JPEG bytes, one a flow frame    | fps, bound, first_frame, stride, height, width |
| `audio.h5`  | dataset `/<video>`                      | mono waveform, float32 or int16      | sample_rate |
| `layout.h5` | group `/<video>`: boxes [F,N,4], category, score, side, state, valid | padded boxes | first_frame, max_boxes |

Every video entry carries `complete = True` once fully written; writers drop incomplete entries
on resume, readers ignore them.

The authors' layouts (no `egodistill_format` attribute) are read as they are:

* EPIC-KITCHENS: `/<video>/<narration_id>` is a dataset of one segment's frames; element i is
  frame `start_frame + i` of the segment (flow: elements 2i and 2i+1 are u and v of the
  segment's i-th flow frame). Reading needs the segment's start frame: pass `segment_starts`
  ({narration_id: start_frame}) to the reader or `segment_start=` to `read_frames`.
* Something-Something: `/<video>` is a dataset of all frames, element i = frame i + 1.
* Audio: `/<video>` is a 1-D waveform without attributes; the sample rate is the reader's
  `sample_rate` argument (EPIC: 24 kHz).

Readers open the file on first use, once per process (after a fork they reopen), read-only, so
they work in DataLoader worker processes; they pickle without the open handle.

Writers build `<path>.tmp` and rename it to `path` on `close()`. An existing `<path>.tmp` (an
interrupted run) is resumed; otherwise an existing `path` is copied in first, so a rerun skips
videos already complete (`writer.has_video`). If the `with` block raises, `path` is untouched and
the temporary file stays for the next run to resume.
"""
from __future__ import annotations

import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

FORMAT_ATTR = "egodistill_format"
FORMAT_VERSION = 1

# Layout codes (docs/architecture.md "Stores").
CATEGORY_PAD, CATEGORY_HAND, CATEGORY_OBJECT = 0, 1, 2
SIDE_LEFT, SIDE_RIGHT, SIDE_NONE = 0, 1, 2
STATE_NONE = 5  # after EPIC's HandState 0..4
LAYOUT_KEYS = ("boxes", "category", "score", "side", "state", "valid")

_VLEN_BYTES = h5py.vlen_dtype(np.dtype("uint8"))


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------


class Store:
    """A lazily opened, read-only HDF5 file. Subclasses add the modality's reads.

    `modality` is the name written in the file's `egodistill_format` attribute. `authors_layout`:
    how to write a store of ours, when files without that attribute (the authors' layouts) are
    not read; empty when they are.
    """

    modality = ""
    authors_layout = ""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.modality} store not found: {self.path}")
        self._file: h5py.File | None = None
        self._pid: int | None = None
        self._layout: str | None = None
        # video id -> its (complete) h5py entry; (video id, "uv") -> a flow video's u, v datasets
        self._entries: dict[Any, Any] = {}
        self._attrs: dict[str, dict[str, Any]] = {}  # video id -> its entry's attributes, read once

    # The handle is per process: h5py handles must not cross a fork or a pickle.
    def _h5(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as e:
                raise OSError(f"{self.path}: cannot open as an HDF5 {self.modality} store ({e})") from None
            self._pid = os.getpid()
            self._entries, self._attrs = {}, {}
        return self._file

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"], state["_pid"], state["_entries"], state["_attrs"] = None, None, {}, {}
        return state

    def close(self) -> None:
        """Close the file handle (it reopens on the next read)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file, self._pid, self._entries, self._attrs = None, None, {}, {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def __str__(self) -> str:
        return str(self.path)

    @property
    def layout(self) -> str:
        """Return "ours", "epic" (authors' `/<video>/<narration_id>`) or "ssv2" (authors' `/<video>`)."""
        if self._layout is None:
            try:
                self._layout = _detect_layout(self._h5(), self.modality, self.path, self.authors_layout)
            except (KeyError, RuntimeError) as e:  # damaged metadata (h5py raises OSError too)
                raise OSError(f"{self.path}: the {self.modality} store is damaged ({e})") from None
            except OSError as e:
                if str(self.path) in str(e):
                    raise
                raise OSError(f"{self.path}: the {self.modality} store is damaged ({e})") from None
        return self._layout

    def video_ids(self) -> list[str]:
        """Return the ids of the complete videos in the store, sorted."""
        f = self._h5()
        if self.layout == "ours":
            return sorted(k for k, e in f.items() if e.attrs.get("complete", False))
        return sorted(f.keys())

    def __contains__(self, video_id: object) -> bool:
        if not isinstance(video_id, str):
            return False
        f = self._h5()
        if video_id not in f:
            return False
        return self.layout != "ours" or bool(f[video_id].attrs.get("complete", False))

    def _entry(self, video_id: str) -> h5py.Group | h5py.Dataset:
        f = self._h5()  # (re)opening the file clears the cached entries
        # Complete videos stay complete: cache their handles (the lookup and the completeness
        # attribute cost ~0.3 ms a call, several calls per loaded clip).
        entry = self._entries.get(video_id)
        if entry is None:
            try:
                present = video_id in self
                if present:
                    entry = self._entries[video_id] = f[video_id]
            except (KeyError, OSError, RuntimeError) as e:  # a damaged entry or file
                raise OSError(f"{self.path}: video {video_id!r} cannot be read, the {self.modality} store is "
                              f"damaged ({e})") from None
            if not present:
                raise KeyError(f"{self.path}: video {video_id!r} is not in this {self.modality} store "
                               f"({len(f)} videos)")
        return entry

    def attrs(self, video_id: str) -> dict[str, Any]:
        """Return the video entry's attributes (fps, first_frame, ...), read once per handle: an
        h5py attribute read costs ~0.15 ms and a multimodal clip asks for several."""
        entry = self._entry(video_id)  # first, so that a reopened file drops stale attributes
        got = self._attrs.get(video_id)
        if got is None:
            try:
                got = self._attrs[video_id] = dict(entry.attrs)
            except (KeyError, OSError, RuntimeError) as e:
                raise OSError(f"{self.path}: video {video_id!r}: its attributes cannot be read, the "
                              f"{self.modality} store is damaged ({e})") from None
        return got


def _detect_layout(f: h5py.File, modality: str, path: Path, ours_only: str = "") -> str:
    """Return the file's layout: "ours" (its format attribute names `modality`), else the authors'
    "epic" or "ssv2"; `ours_only` (how to write one of ours) refuses the authors' layouts."""
    fmt = f.attrs.get(FORMAT_ATTR)
    if fmt is not None:
        fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
        if fmt != modality:
            raise ValueError(f"{path}: is an egodistill {fmt} store, expected a {modality} store")
        return "ours"
    if ours_only:
        raise ValueError(f"{path}: not an egodistill {modality} store (root attribute {FORMAT_ATTR!r} missing); "
                         f"{ours_only}")
    for key in f:
        entry = f[key]
        if isinstance(entry, h5py.Dataset):
            return "ssv2"
        for sub in entry.values():
            if isinstance(sub, h5py.Dataset):
                return "epic"
            raise ValueError(f"{path}: unrecognised layout: /{key}/{sub.name.rsplit('/', 1)[-1]} is a group; "
                             f"expected /<video> datasets (SSv2) or /<video>/<narration_id> datasets (EPIC)")
    return "ssv2"  # empty file: nothing to read either way


def _as_bytes(element: Any) -> bytes:
    """Return one stored frame as bytes (vlen uint8 array, fixed-length np.bytes_, or object)."""
    if isinstance(element, np.ndarray):
        return element.tobytes()
    return bytes(element)


def _read_elements(ds: h5py.Dataset, indices: Sequence[int], what: str, numbers: Sequence[int],
                   unit: str = "frame") -> list[bytes]:
    """Return `ds[i]` as bytes for each index, reading each distinct index once, in one call."""
    n = ds.shape[0]
    for i, num in zip(indices, numbers):
        if not 0 <= i < n:
            raise KeyError(f"{what}: {unit} {num} is not stored (element {i} of {n})")
    if not indices:
        return []
    uniq = sorted(set(int(i) for i in indices))
    lo, hi = uniq[0], uniq[-1] + 1
    step = uniq[1] - lo if len(uniq) > 1 else 1
    try:
        if hi - lo <= len(uniq) + 2:
            # A (nearly) consecutive run, as flow frames are: one slice read is cheaper than h5py's
            # point selection.
            run = ds[lo:hi]
            block = [run[i - lo] for i in uniq]
        elif uniq == list(range(lo, hi, step)):
            block = ds[lo:hi:step]  # evenly spaced (a dense clip's stride): one strided hyperslab
        else:
            block = ds[uniq] if len(uniq) > 1 else [ds[uniq[0]]]  # point selection: increasing indices
    except (OSError, RuntimeError) as e:  # damaged bytes on disk: name the first unreadable element
        number = dict(zip((int(i) for i in indices), numbers))
        for i in uniq:
            try:
                ds[i]
            except (OSError, RuntimeError) as e_i:
                raise OSError(f"{what}: {unit} {number[i]} cannot be read, the store is damaged ({e_i})") from None
        raise OSError(f"{what}: {unit}s {numbers[0]}..{numbers[-1]} cannot be read, the store is damaged ({e})") from None
    got = {i: _as_bytes(b) for i, b in zip(uniq, block)}
    return [got[int(i)] for i in indices]


class _FrameStore(Store):
    """Shared frame-number logic of the RGB and flow stores."""

    def __init__(self, path: str | os.PathLike, *, segment_starts: Mapping[str, int] | None = None,
                 first_frame: int = 1):
        super().__init__(path)
        self.segment_starts = dict(segment_starts or {})
        self.default_first_frame = first_frame  # authors' SSv2 layout: number of element 0

    def _segment_start(self, video_id: str, segment_id: str | None, segment_start: int | None) -> int:
        if segment_start is not None:
            return int(segment_start)
        if segment_id is None:
            raise KeyError(f"{self.path}: video {video_id!r}: this store has the authors' EPIC layout "
                           f"(/<video>/<narration_id>); reading it needs the sample's segment id")
        if segment_id not in self.segment_starts:
            raise KeyError(f"{self.path}: video {video_id!r}, segment {segment_id!r}: the segment's start frame "
                           f"is unknown; pass segment_starts={{narration_id: start_frame}} to the reader")
        return int(self.segment_starts[segment_id])

    def _segment(self, video_id: str, segment_id: str | None) -> h5py.Dataset:
        group = self._entry(video_id)
        if segment_id is None or segment_id not in group:
            raise KeyError(f"{self.path}: video {video_id!r}: segment {segment_id!r} is not stored")
        return group[segment_id]

    def fps(self, video_id: str) -> float:
        """Return the video's frame rate (0.0 when the store does not record one)."""
        return float(self.attrs(video_id).get("fps", 0.0))

    def frame_size(self, video_id: str) -> tuple[int, int]:
        """Return (height, width) of the video's frames (our layout only)."""
        attrs = self.attrs(video_id)
        if "height" not in attrs:
            raise KeyError(f"{self.path}: video {video_id!r} records no frame size")
        return int(attrs["height"]), int(attrs["width"])


class RGBStore(_FrameStore):
    """RGB frames as JPEG bytes. `read_frames(video, numbers) -> list[bytes]`."""

    modality = "rgb"

    def num_frames(self, video_id: str, segment_id: str | None = None) -> int:
        """Return the number of stored frames of the video (authors' EPIC layout: of the segment)."""
        entry = self._entry(video_id)
        if self.layout == "epic":
            return int(self._segment(video_id, segment_id).shape[0])
        return int(entry.shape[0])

    def first_frame(self, video_id: str, segment_id: str | None = None, segment_start: int | None = None) -> int:
        """Return the number of the video's first stored frame (EPIC: 1)."""
        entry = self._entry(video_id)
        if self.layout == "epic":
            return self._segment_start(video_id, segment_id, segment_start)
        if self.layout == "ssv2":
            return self.default_first_frame
        return int(self.attrs(video_id)["first_frame"])

    def read_frames(self, video_id: str, frame_numbers: Sequence[int], segment_id: str | None = None,
                    segment_start: int | None = None) -> list[bytes]:
        """Return the JPEG bytes of each frame number, in the order asked (repeats allowed).

        Raises KeyError naming the store, video and frame when one is not stored.
        """
        numbers = [int(n) for n in frame_numbers]
        what = f"{self.path}: video {video_id!r}"
        if self.layout == "epic":
            start = self._segment_start(video_id, segment_id, segment_start)
            ds = self._segment(video_id, segment_id)
            what += f", segment {segment_id!r}"
        else:
            start = self.first_frame(video_id)
            ds = self._entry(video_id)
        return _read_elements(ds, [n - start for n in numbers], what, numbers)


class FlowStore(_FrameStore):
    """Optical flow as u and v grey JPEGs (8-bit, 128 = no motion), one pair per flow frame.

    Flow frame k (counted from `first_frame`) holds the motion from RGB frame
    `rgb_first + (k - first_frame) * stride` onwards; RGB frame r maps to flow frame
    `first_frame + ceil((r - rgb_first + 1) / stride) - 1` (EPIC: ceil(r / 2)).
    """

    modality = "flow"

    def num_frames(self, video_id: str, segment_id: str | None = None) -> int:
        """Return the number of flow frames of the video (authors' EPIC layout: of the segment)."""
        entry = self._entry(video_id)
        if self.layout == "epic":
            return int(self._segment(video_id, segment_id).shape[0]) // 2
        if self.layout == "ssv2":
            raise ValueError(f"{self.path}: the authors' SSv2 flow layout (one image per frame) is not supported; "
                             f"convert it with `egodistill prepare flow`")
        return int(self._planes(video_id)[0].shape[0])

    def _planes(self, video_id: str) -> tuple[h5py.Dataset, h5py.Dataset]:
        """Return the video's u and v datasets (our layout), looked up once per handle."""
        entry = self._entry(video_id)  # first: a reopened file has dropped the cached lookups
        planes = self._entries.get((video_id, "uv"))
        if planes is None:
            planes = self._entries[(video_id, "uv")] = (entry["u"], entry["v"])
        return planes

    def first_frame(self, video_id: str, segment_id: str | None = None, segment_start: int | None = None) -> int:
        """Return the number of the video's first flow frame (EPIC: 1). Authors' EPIC layout: the
        segment's first flow frame, ceil(start_frame / 2)."""
        entry = self._entry(video_id)
        if self.layout == "epic":
            return max(1, math.ceil(self._segment_start(video_id, segment_id, segment_start) / 2))
        return int(self.attrs(video_id).get("first_frame", self.default_first_frame))

    def stride(self, video_id: str) -> int:
        """Return the number of RGB frames per flow frame (EPIC: 2)."""
        return int(self.attrs(video_id).get("stride", 2))

    def bound(self, video_id: str) -> float:
        """Return the flow magnitude (pixels) that maps to 0 / 255 (EPIC: 20)."""
        return float(self.attrs(video_id).get("bound", 20.0))

    def read_frames(self, video_id: str, flow_numbers: Sequence[int], segment_id: str | None = None,
                    segment_start: int | None = None) -> tuple[list[bytes], list[bytes]]:
        """Return (u JPEGs, v JPEGs) of each flow frame number, in the order asked.

        Raises KeyError naming the store, video and flow frame when one is not stored.
        """
        numbers = [int(n) for n in flow_numbers]
        what = f"{self.path}: video {video_id!r} (flow)"
        if self.layout == "epic":
            first = self.first_frame(video_id, segment_id, segment_start)
            ds = self._segment(video_id, segment_id)
            what += f", segment {segment_id!r}"
            n_flow = ds.shape[0] // 2
            for n in numbers:
                if not 0 <= n - first < n_flow:
                    raise KeyError(f"{what}: flow frame {n} is not stored ({n_flow} from {first})")
            both = _read_elements(ds, [2 * (n - first) + c for n in numbers for c in (0, 1)], what,
                                  [n for n in numbers for _ in (0, 1)], "flow frame")
            return both[0::2], both[1::2]
        self.num_frames(video_id)  # rejects unsupported layouts with a clear message
        u, v = self._planes(video_id)
        first = self.first_frame(video_id)
        idx = [n - first for n in numbers]
        return (_read_elements(u, idx, what + " u", numbers, "flow frame"),
                _read_elements(v, idx, what + " v", numbers, "flow frame"))


class AudioStore(Store):
    """Mono waveforms. `read(video, start, stop) -> float32 [stop - start]`, zero-padded outside."""

    modality = "audio"

    def __init__(self, path: str | os.PathLike, *, sample_rate: int = 24000):
        super().__init__(path)
        self.default_sample_rate = sample_rate  # authors' files record none (EPIC: 24 kHz)

    def sample_rate(self, video_id: str) -> int:
        """Return the waveform's sample rate in Hz."""
        return int(self.attrs(video_id).get("sample_rate", self.default_sample_rate))

    def num_samples(self, video_id: str) -> int:
        """Return the waveform's length in samples."""
        return int(self._entry(video_id).shape[0])

    def read(self, video_id: str, start_sample: int, stop_sample: int) -> np.ndarray:
        """Return samples `start_sample .. stop_sample - 1` as float32 `[stop - start]` in [-1, 1].

        Samples before 0 or past the end are zeros; int16 waveforms are scaled by 1/32768.
        """
        start, stop = int(start_sample), int(stop_sample)
        if stop < start:
            raise ValueError(f"{self.path}: video {video_id!r}: audio range {start}..{stop} is reversed")
        ds = self._entry(video_id)
        n = ds.shape[0]
        out = np.zeros(stop - start, dtype=np.float32)
        lo, hi = max(start, 0), min(stop, n)
        if hi > lo:
            chunk = ds[lo:hi]
            if chunk.dtype == np.int16:
                out[lo - start:hi - start] = chunk.astype(np.float32) / 32768.0
            else:
                out[lo - start:hi - start] = chunk
        return out


class LayoutStore(Store):
    """Per-frame padded boxes of hands and objects. `read(video, numbers) -> dict of [T, N, ...]`."""

    modality = "layout"
    authors_layout = "write one with `egodistill prepare layout`"

    def first_frame(self, video_id: str) -> int:
        """Return the number of the video's first frame."""
        return int(self.attrs(video_id)["first_frame"])

    def num_frames(self, video_id: str) -> int:
        """Return the number of frames with a (possibly empty) box list."""
        return int(self._entry(video_id)["boxes"].shape[0])

    def max_boxes(self, video_id: str) -> int:
        """Return N, the padded number of boxes per frame."""
        return int(self._entry(video_id)["boxes"].shape[1])

    def read(self, video_id: str, frame_numbers: Sequence[int], segment_id: str | None = None) -> dict[str, np.ndarray]:
        """Return the frames' boxes: boxes float32 [T,N,4] (x1,y1,x2,y2 in [0,1]), category int64
        [T,N] (0 pad, 1 hand, 2 object), score float32 [T,N], side int64 [T,N] (0 left, 1 right,
        2 none), state int64 [T,N] (EPIC HandState 0..4, 5 none), valid bool [T,N].

        `segment_id` is accepted for a uniform interface (the layout store is per video).
        Raises KeyError naming the store, video and frame when a frame is outside the video.
        """
        group = self._entry(video_id)
        first, n = int(self.attrs(video_id)["first_frame"]), group["boxes"].shape[0]
        numbers = [int(f) for f in frame_numbers]
        for f in numbers:
            if not first <= f < first + n:
                raise KeyError(f"{self.path}: video {video_id!r}: frame {f} is not stored "
                               f"(frames {first}..{first + n - 1})")
        idx = np.asarray(numbers, dtype=np.int64) - first
        uniq, inverse = np.unique(idx, return_inverse=True)
        out = {}
        for key in LAYOUT_KEYS:
            # A contiguous slice covering the requested frames is one HDF5 read; then gather.
            lo, hi = (int(uniq[0]), int(uniq[-1]) + 1) if len(uniq) else (0, 0)
            block = group[key][lo:hi]
            arr = block[uniq - lo][inverse] if len(uniq) else block[:0]
            if key in ("category", "side", "state"):
                arr = arr.astype(np.int64)
            elif key in ("boxes", "score"):
                arr = arr.astype(np.float32)
            else:
                arr = arr.astype(bool)
            out[key] = arr
        return out


def open_store(modality: str, path: str | os.PathLike, **kwargs: Any) -> Store:
    """Return the reader of the registered modality `modality` (e.g. "rgb", "flow", "audio",
    "layout") for `path`: the reader class that its `Modality` declares.

    Our layout and the authors' (EPIC `/<video>/<narration_id>`, SSv2 `/<video>`) are told apart
    on first use. `kwargs` go to the reader (`segment_starts`, `first_frame`, `sample_rate`).
    """
    from egodistill.data.modalities import MODALITIES  # the registry sits above the stores: import on use

    if modality not in MODALITIES:
        raise ValueError(f"unknown store modality {modality!r}: expected one of {', '.join(MODALITIES)}")
    return MODALITIES[modality].open_store(path, **kwargs)


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------


def tmp_path_of(path: str | os.PathLike) -> Path:
    """Return the temporary file a writer builds before renaming it to `path`."""
    path = Path(path)
    return path.with_name(path.name + ".tmp")


def check_video_id(video_id: str) -> str:
    """Return `video_id` if it can name an HDF5 entry, else raise ValueError saying why."""
    if not isinstance(video_id, str) or not video_id or "/" in video_id or video_id in (".", ".."):
        raise ValueError(f"bad video id {video_id!r}: expected a non-empty name without '/'")
    return video_id


def check_jpeg(blob: bytes, what: str) -> None:
    """Raise ValueError naming `what` unless `blob` starts and ends like a JPEG (SOI ... EOI)."""
    if len(blob) < 4 or blob[:2] != b"\xff\xd8":
        raise ValueError(f"{what}: not a JPEG (expected the bytes FF D8 at the start, got {bytes(blob[:2]).hex()}, "
                         f"{len(blob)} bytes)")
    # EOI may be followed by padding (some encoders, fixed-length HDF5 strings).
    if b"\xff\xd9" not in bytes(blob[-64:]):
        raise ValueError(f"{what}: truncated JPEG (no end-of-image marker FF D9 in its last bytes, {len(blob)} bytes)")


def jpeg_size(blob: bytes, what: str) -> tuple[int, int]:
    """Return (height, width) read from the JPEG's start-of-frame marker, without decoding."""
    data = bytes(blob)
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 7:i + 9], "big")
        i += 2 + length
    raise ValueError(f"{what}: JPEG without a start-of-frame marker (cannot read its size)")


def _vlen_array(blobs: Sequence[bytes]) -> np.ndarray:
    arr = np.empty(len(blobs), dtype=object)
    for i, b in enumerate(blobs):
        arr[i] = np.frombuffer(b, dtype=np.uint8)
    return arr


def _check_rate(value: float, what: str) -> None:
    """Raise ValueError unless `value` is a finite number > 0 (a frame rate, a flow bound)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a number > 0, got {value!r}")


class StoreWriter:
    """Builds `<path>.tmp` (resuming it, or starting from a copy of `path`) and renames it on close."""

    modality = ""

    def __init__(self, path: str | os.PathLike, *, resume: bool = True):
        self.path = Path(path)
        self.tmp = tmp_path_of(self.path)
        if self.path.is_dir():
            raise IsADirectoryError(f"{self.path} is a folder; give the {self.modality} store's file name, "
                                    f"e.g. {self.path / (self.modality + '.h5')}")
        if self.path.exists() and not h5py.is_hdf5(self.path) and (resume or not self.path.is_file()):
            raise ValueError(f"{self.path} exists and is not an HDF5 store; it is left as it is. Give another "
                             f"output file{', or --overwrite to replace it' if self.path.is_file() else ''}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not resume and self.tmp.exists():
            self.tmp.unlink()
        if self.tmp.exists():
            try:  # an interrupted run: keep what it completed
                self._file = h5py.File(self.tmp, "a")
            except OSError:  # killed while HDF5 metadata was half-written: start again
                self.tmp.unlink()
        if not self.tmp.exists():
            if resume and self.path.exists():
                shutil.copyfile(self.path, self.tmp)
                self._file = h5py.File(self.tmp, "a")
            else:
                self._file = h5py.File(self.tmp, "w")
        fmt = self._file.attrs.get(FORMAT_ATTR)
        if fmt is None:
            if len(self._file):
                name = self.path if self.path.exists() else self.tmp
                self._file.close()
                raise ValueError(f"{name}: not an egodistill store (no {FORMAT_ATTR!r} attribute); "
                                 f"refusing to add videos to it")
            self._file.attrs[FORMAT_ATTR] = self.modality
            self._file.attrs["format_version"] = FORMAT_VERSION
        elif (fmt.decode() if isinstance(fmt, bytes) else str(fmt)) != self.modality:
            self._file.close()
            raise ValueError(f"{self.path}: is an egodistill {fmt} store, expected {self.modality}")
        self._drop_incomplete()
        self.closed = False

    def _drop_incomplete(self) -> None:
        """Drop the entries an interrupted run left half-written. A kill -9 while HDF5 wrote an
        entry can leave a link to an object that cannot be read nor unlinked; then the readable,
        complete entries are copied into a new temporary file, and the damaged ones are redone."""
        damaged = []
        for key in list(self._file.keys()):
            try:
                if self._file[key].attrs.get("complete", False):
                    continue
                del self._file[key]
            except (KeyError, OSError, RuntimeError, ValueError):
                damaged.append(key)
        if not damaged:
            return
        rebuilt = self.tmp.with_name(self.tmp.name + ".rebuild")
        with h5py.File(rebuilt, "w") as out:
            out.attrs.update(dict(self._file.attrs))
            for key in self._file.keys():
                if key in damaged:
                    continue
                try:
                    self._file.copy(self._file[key], out, name=key)
                except (KeyError, OSError, RuntimeError, ValueError):
                    if key in out:
                        del out[key]
        self._file.close()
        os.replace(rebuilt, self.tmp)
        self._file = h5py.File(self.tmp, "a")

    def has_video(self, video_id: str) -> bool:
        """Return True if `video_id` is complete in the store being written."""
        return video_id in self._file and bool(self._file[video_id].attrs.get("complete", False))

    def video_ids(self) -> list[str]:
        """Return the complete videos written so far (including resumed ones), sorted."""
        return sorted(k for k in self._file if self.has_video(k))

    def _replace(self, video_id: str) -> None:
        check_video_id(video_id)
        if video_id in self._file:
            del self._file[video_id]

    def _finish(self, entry: h5py.Group | h5py.Dataset) -> None:
        # Written last: a video is complete only once everything else is on disk.
        entry.attrs["complete"] = True
        self._file.flush()

    def close(self) -> Path:
        """Finish: close the temporary file and rename it to `path`; return `path`."""
        if not self.closed:
            self._file.close()
            os.replace(self.tmp, self.path)
            self.closed = True
        return self.path

    def abort(self) -> None:
        """Close without renaming: `path` keeps its previous content; the temporary file stays for a resume."""
        if not self.closed:
            self._file.close()
            self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class RGBWriter(StoreWriter):
    """Writes rgb.h5: `add_video(video_id, jpegs, fps, first_frame=1, height=None, width=None)`."""

    modality = "rgb"

    def add_video(self, video_id: str, jpegs: Sequence[bytes], fps: float, first_frame: int = 1,
                  height: int | None = None, width: int | None = None, **attrs: Any) -> None:
        """Store a video's JPEG frames, numbered `first_frame, first_frame + 1, ...`.

        Every blob is checked for JPEG start/end markers; (height, width) default to the first
        frame's. Extra keyword attributes are stored on the video's dataset.
        """
        self._replace(video_id)
        _check_rate(fps, f"{self.path}: video {video_id!r}: fps")
        if not jpegs:
            raise ValueError(f"{self.path}: video {video_id!r} has no frames")
        for i, b in enumerate(jpegs):
            check_jpeg(b, f"video {video_id!r}, frame {first_frame + i}")
        if height is None or width is None:
            height, width = jpeg_size(jpegs[0], f"video {video_id!r}, frame {first_frame}")
        ds = self._file.create_dataset(video_id, data=_vlen_array(jpegs), dtype=_VLEN_BYTES)
        ds.attrs.update(fps=float(fps), height=int(height), width=int(width), first_frame=int(first_frame), **attrs)
        self._finish(ds)


class FlowWriter(StoreWriter):
    """Writes flow.h5: `add_video(video_id, u_jpegs, v_jpegs, fps, first_frame=1, stride=2, bound=20.0)`."""

    modality = "flow"

    def add_video(self, video_id: str, u_jpegs: Sequence[bytes], v_jpegs: Sequence[bytes], fps: float,
                  first_frame: int = 1, stride: int = 2, bound: float = 20.0,
                  height: int | None = None, width: int | None = None, **attrs: Any) -> None:
        """Store a video's flow frames as grey JPEG pairs, numbered from `first_frame`.

        `stride`: RGB frames per flow frame; `bound`: the flow (pixels) quantised to 0 / 255.
        """
        self._replace(video_id)
        if len(u_jpegs) != len(v_jpegs):
            raise ValueError(f"{self.path}: video {video_id!r}: {len(u_jpegs)} u frames but {len(v_jpegs)} v frames")
        if not u_jpegs:
            raise ValueError(f"{self.path}: video {video_id!r} has no flow frames")
        if stride < 1:
            raise ValueError(f"{self.path}: video {video_id!r}: stride must be >= 1, got {stride}")
        _check_rate(fps, f"{self.path}: video {video_id!r}: fps")
        _check_rate(bound, f"{self.path}: video {video_id!r}: flow bound")
        for c, blobs in (("u", u_jpegs), ("v", v_jpegs)):
            for i, b in enumerate(blobs):
                check_jpeg(b, f"video {video_id!r}, flow frame {first_frame + i} ({c})")
        if height is None or width is None:
            height, width = jpeg_size(u_jpegs[0], f"video {video_id!r}, flow frame {first_frame} (u)")
        group = self._file.create_group(video_id)
        group.create_dataset("u", data=_vlen_array(u_jpegs), dtype=_VLEN_BYTES)
        group.create_dataset("v", data=_vlen_array(v_jpegs), dtype=_VLEN_BYTES)
        group.attrs.update(fps=float(fps), first_frame=int(first_frame), stride=int(stride), bound=float(bound),
                           height=int(height), width=int(width), **attrs)
        self._finish(group)


class AudioWriter(StoreWriter):
    """Writes audio.h5: `add_video(video_id, waveform, sample_rate)`; float32 (default) or int16."""

    modality = "audio"

    def __init__(self, path: str | os.PathLike, *, resume: bool = True, dtype: str = "float32"):
        if dtype not in ("float32", "int16"):
            raise ValueError(f"audio dtype must be 'float32' or 'int16', got {dtype!r}")
        super().__init__(path, resume=resume)
        self.dtype = dtype

    def add_video(self, video_id: str, waveform: np.ndarray, sample_rate: int, **attrs: Any) -> None:
        """Store a mono waveform `[n]` (float in [-1, 1], or int16) at `sample_rate` Hz."""
        self._replace(video_id)
        if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate < 1:
            raise ValueError(f"{self.path}: video {video_id!r}: the sample rate must be a whole number of Hz >= 1, "
                             f"got {sample_rate}")
        wave = np.asarray(waveform)
        if wave.ndim != 1:
            raise ValueError(f"{self.path}: video {video_id!r}: expected a mono waveform [n], got shape {wave.shape}")
        if wave.dtype == np.int16:
            wave = wave.astype(np.float32) / 32768.0
        wave = wave.astype(np.float32, copy=False)
        if not np.isfinite(wave).all():
            raise ValueError(f"{self.path}: video {video_id!r}: waveform has NaN or infinite samples")
        if self.dtype == "int16":
            wave = np.clip(np.round(wave * 32767.0), -32768, 32767).astype(np.int16)
        chunks = (min(max(len(wave), 1), 1 << 16),)
        ds = self._file.create_dataset(video_id, data=wave, chunks=chunks if len(wave) else None)
        ds.attrs.update(sample_rate=int(sample_rate), **attrs)
        self._finish(ds)


class LayoutWriter(StoreWriter):
    """Writes layout.h5: `add_video(video_id, boxes, category, score, side, state, valid, first_frame=1)`."""

    modality = "layout"

    def add_video(self, video_id: str, boxes: np.ndarray, category: np.ndarray, score: np.ndarray,
                  side: np.ndarray, state: np.ndarray, valid: np.ndarray, first_frame: int = 1,
                  **attrs: Any) -> None:
        """Store padded per-frame boxes: boxes [F,N,4] (normalised x1,y1,x2,y2), category, score,
        side, state, valid [F,N] with the codes of docs/architecture.md."""
        self._replace(video_id)
        boxes = np.asarray(boxes, dtype=np.float32)
        if boxes.ndim != 3 or boxes.shape[2] != 4:
            raise ValueError(f"{self.path}: video {video_id!r}: boxes must be [frames, N, 4], got {boxes.shape}")
        f, n = boxes.shape[:2]
        arrays = {"boxes": boxes}
        for key, value, dtype in (("category", category, np.int8), ("score", score, np.float32),
                                  ("side", side, np.int8), ("state", state, np.int8), ("valid", valid, bool)):
            arr = np.asarray(value)
            if arr.shape != (f, n):
                raise ValueError(f"{self.path}: video {video_id!r}: {key} must be [{f}, {n}], got {arr.shape}")
            arrays[key] = arr.astype(dtype)
        bad = arrays["valid"] & ~((boxes >= 0) & (boxes <= 1)).all(axis=2)
        if bad.any():
            t, j = map(int, np.argwhere(bad)[0])
            raise ValueError(f"{self.path}: video {video_id!r}, frame {first_frame + t}, box {j}: "
                             f"coordinates {boxes[t, j].tolist()} are not normalised to [0, 1]")
        group = self._file.create_group(video_id)
        for key, arr in arrays.items():
            group.create_dataset(key, data=arr, compression="gzip" if arr.size > 4096 else None)
        group.attrs.update(first_frame=int(first_frame), max_boxes=int(n), **attrs)
        self._finish(group)


