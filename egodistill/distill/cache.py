"""Teacher-logit cache: K pre-drawn views per training sample with the ensemble's logits
(docs/distillation.md, "Teacher-logit cache").

File layout (HDF5):

    attrs:  format ("egodistill-teacher-cache"), version, fingerprint (JSON text), views (K),
            heads (JSON {head: classes})
    /ids             [N] utf-8 strings, the training samples in dataset order
    /views           [N*K, D] float64, ViewParams.to_array() of each cached view
    /logits/<head>   [N*K, C] float16, the ensemble teacher's logits for that view
    /logits/teacher.features  [N*K, D] float16, with distill.features: the matched teacher's
                     pooled features for that view (`distill.ensemble.FEATURES`)

Row `index * K + k` holds view k of sample `index` (flat, so that the builder writes contiguous
slices).

The file is written under a temporary name and renamed into place only when every row is
filled, so a cache on disk is always complete. Its fingerprint records what made it (teachers,
their weights' hashes, the weighting and its weights, the data files, K, the seed); a cache
whose fingerprint differs from the current run's is rebuilt.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np

FORMAT = "egodistill-teacher-cache"
VERSION = 1
def fingerprint_text(fingerprint: dict[str, Any]) -> str:
    """Return the canonical JSON text of a fingerprint (sorted keys, so equal dicts compare equal)."""
    return json.dumps(fingerprint, sort_keys=True, default=_jsonable)


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if hasattr(x, "tolist"):  # torch tensors, numpy scalars
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"teacher cache fingerprint: cannot record a {type(x).__name__}")


class CacheWriter:
    """Writes a cache file row by row; `close()` renames it into place once every row is written.

    Use as a context manager: on an exception the temporary file is removed and nothing is left
    at `path`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fingerprint: dict[str, Any],
        ids: Sequence[str],
        views: int,
        view_dim: int,
        heads: dict[str, int],
    ):
        if views < 1:
            raise ValueError(f"teacher cache: views must be >= 1, got {views}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.n, self.k = len(ids), views
        self.heads = dict(heads)
        self.file = h5py.File(self.tmp, "w")
        self.file.attrs["format"] = FORMAT
        self.file.attrs["version"] = VERSION
        self.file.attrs["fingerprint"] = fingerprint_text(fingerprint)
        self.file.attrs["views"] = views
        self.file.attrs["heads"] = json.dumps(self.heads)
        self.file.create_dataset("ids", data=np.array(list(ids), dtype=object), dtype=h5py.string_dtype("utf-8"))
        rows = self.n * views
        self.view_dim = view_dim
        self.views = self.file.create_dataset("views", (rows, view_dim), dtype="f8")
        self.logits = {h: self.file.create_dataset(f"logits/{h}", (rows, c), dtype="f2") for h, c in self.heads.items()}
        self.filled = np.zeros(rows, dtype=bool)

    def write_rows(self, start: int, views: np.ndarray, logits: dict[str, np.ndarray]) -> None:
        """Store M consecutive rows from `start` (row = index * K + k): views [M, D], logits {head: [M, C]}."""
        views = np.asarray(views, dtype=np.float64)
        m = views.shape[0]
        if views.shape != (m, self.view_dim):
            raise ValueError(f"teacher cache: views must be [rows, {self.view_dim}], got {views.shape}")
        if start < 0 or start + m > self.filled.shape[0]:
            raise IndexError(f"teacher cache: rows {start}..{start + m - 1} outside 0..{self.filled.shape[0] - 1}")
        for h in self.logits:
            if h not in logits:
                raise KeyError(f"teacher cache: no logits for head '{h}' (got {sorted(logits)})")
            if np.asarray(logits[h]).shape != (m, self.heads[h]):
                raise ValueError(f"teacher cache: logits for head '{h}' must be [{m}, {self.heads[h]}], got {np.asarray(logits[h]).shape}")
        self.views[start : start + m] = views
        for h, ds in self.logits.items():
            ds[start : start + m] = np.asarray(logits[h], dtype=np.float16)
        self.filled[start : start + m] = True

    def write(self, index: int, k: int, view: np.ndarray, logits: dict[str, np.ndarray]) -> None:
        """Store view `k` of sample `index`: its view array [D] and the ensemble logits {head: [C]}."""
        self.write_rows(index * self.k + k, np.asarray(view)[None], {h: np.asarray(v)[None] for h, v in logits.items()})

    def close(self) -> None:
        """Finish the file and rename it into place; raises if any row was never written."""
        missing = np.argwhere(~self.filled)
        self.file.close()
        if len(missing):
            os.remove(self.tmp)
            i, k = divmod(int(missing[0][0]), self.k)
            raise RuntimeError(f"teacher cache {self.path}: {len(missing)} views never written (first: sample {i}, view {k})")
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Drop the temporary file."""
        try:
            self.file.close()
        finally:
            if self.tmp.exists():
                os.remove(self.tmp)

    def __enter__(self) -> "CacheWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class TeacherCache:
    """Read-only access to a cache file. Opens lazily, once per process (safe in DataLoader workers)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"teacher cache not found: {self.path}")
        advice = "; delete it, or set distill.cache.path to another file, to build the cache"
        try:
            f = h5py.File(self.path, "r")
        except OSError as e:
            raise ValueError(f"{self.path}: not a teacher cache (not a readable HDF5 file: {e}){advice}") from None
        with f:
            if f.attrs.get("format") != FORMAT:
                raise ValueError(f"{self.path}: not a teacher cache (attribute 'format' is "
                                 f"{f.attrs.get('format')!r}){advice}")
            try:
                if int(f.attrs["version"]) != VERSION:
                    raise ValueError(f"{self.path}: teacher cache version {f.attrs['version']}, expected {VERSION}{advice}")
                self.fingerprint_text = str(f.attrs["fingerprint"])
                self.views = int(f.attrs["views"])
                self.heads: dict[str, int] = json.loads(f.attrs["heads"])
                self.ids = [s.decode() if isinstance(s, bytes) else str(s) for s in f["ids"][()]]
            except (KeyError, OSError, RuntimeError, TypeError, json.JSONDecodeError) as e:
                raise ValueError(f"{self.path}: a damaged or incomplete teacher cache ({type(e).__name__}: {e})"
                                 f"{advice}") from None
        self._file: h5py.File | None = None
        self._pid: int | None = None
        self._views_ds: h5py.Dataset | None = None
        self._logits_ds: dict[str, h5py.Dataset] = {}

    @property
    def fingerprint(self) -> dict[str, Any]:
        return json.loads(self.fingerprint_text)

    def matches(self, fingerprint: dict[str, Any]) -> bool:
        """True when the cache was made from exactly `fingerprint`."""
        return self.fingerprint_text == fingerprint_text(fingerprint)

    def __len__(self) -> int:
        return len(self.ids)

    def _h5(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
            # Dataset handles kept open: a lookup by name costs as much as the small read itself.
            self._views_ds = self._file["views"]
            self._logits_ds = {h: self._file[f"logits/{h}"] for h in self.heads}
        return self._file

    def view(self, index: int, k: int) -> np.ndarray:
        """Return the view array [D] (float64) of cached view `k` of sample `index`."""
        self._check(index, k)
        self._h5()
        return self._views_ds[index * self.views + k]

    def logits(self, index: int, k: int) -> dict[str, np.ndarray]:
        """Return the ensemble logits {head: [C] float16} of cached view `k` of sample `index`."""
        self._check(index, k)
        self._h5()
        row = index * self.views + k
        return {h: ds[row] for h, ds in self._logits_ds.items()}

    def _check(self, index: int, k: int) -> None:
        if not 0 <= index < len(self.ids):
            raise IndexError(f"teacher cache {self.path}: sample index {index} out of range 0..{len(self.ids) - 1}")
        if not 0 <= k < self.views:
            raise IndexError(f"teacher cache {self.path}: view {k} out of range 0..{self.views - 1}")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None  # h5py handles do not pickle; reopen in the worker
        state["_pid"] = None
        state["_views_ds"] = None
        state["_logits_ds"] = {}
        return state


def replay_choice(seed: int, epoch: int, index: int, views: int) -> int:
    """Return which cached view (0..views-1) sample `index` replays in `epoch`; deterministic."""
    rng = np.random.default_rng([seed, epoch, index])
    return int(rng.integers(views))
