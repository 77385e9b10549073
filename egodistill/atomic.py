"""Atomic file writes: every file the library writes whole goes through here.

A file is written to a temporary name in its own folder (so the rename stays on one file
system) and renamed onto its path only once it is complete: a reader sees the old file or the
new one, never half of one. On an error the temporary file is removed and the old file, if
any, is left as it was.

Not for writers that keep their temporary file on purpose: the HDF5 store writers resume an
interrupted `<path>.tmp` (`data/stores.py`), the teacher-cache writer is closed or aborted by
its caller (`distill/cache.py`), and folders are swapped whole (`engine/checkpoint.py`'s
`last/`, `synth.generate`'s `<out>.tmp/`).
"""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def nearest_existing(path: str | os.PathLike) -> Path:
    """Return `path` or its nearest existing parent: where an output that may not exist yet, nor
    its folder, would be made (for the checks of room and permissions before writing)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def temp_path(path: str | os.PathLike, *, keep_suffix: bool = False) -> Path:
    """Return the temporary name `atomic_path` writes `path` under: `<name>.tmp` beside it, or
    with `keep_suffix` the hidden `.<stem>.tmp<suffix>` (for writers that choose the format by
    the file's suffix, such as PyAV and torch.export)."""
    path = Path(path)
    if keep_suffix:
        return path.with_name(f".{path.stem}.tmp{path.suffix}")
    return path.with_name(path.name + ".tmp")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield the temporary path to write `path` at (`temp_path`); on a clean exit rename it onto
    `path`, on an error remove it. For writers that want a path (h5py, savefig, safetensors)."""
    path = Path(path)
    tmp = temp_path(path, keep_suffix=keep_suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` atomically as UTF-8, line ends as given; returns the path."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any, *, indent: int | None = 1, allow_nan: bool = True) -> Path:
    """Write `data` as JSON to `path` atomically; returns the path. `allow_nan=False`: standard
    JSON only (NaN or infinity raise ValueError before anything is written)."""
    return write_text(path, json.dumps(data, indent=indent, allow_nan=allow_nan))
