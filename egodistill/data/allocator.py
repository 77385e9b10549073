"""Keep freed clip buffers in the heap, so the next clip does not page them in again.

A multimodal training item is a few float tensors of several MB each (16x3x224x224 float32 is
9.6 MB). glibc serves such blocks with `mmap` once its adaptive threshold has grown, and when an
item's tensors are freed together the top of the heap exceeds the trim threshold and is handed
back to the OS. The next item then page-faults all of its output memory in again: measured at
~11 ms of a 41 ms rgb+flow+audio item (docs/data_pipeline.md). Raising both thresholds keeps
that memory in the process; it costs at most `trim_threshold` bytes of idle heap per process.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 256 * 1024 * 1024

_applied: bool | None = None


def keep_freed_buffers(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Set glibc's mmap and trim thresholds for this process (and the workers it forks).

    Returns True if the thresholds are in effect, False where there is no glibc (macOS,
    Windows, musl) or where the user set `MALLOC_MMAP_THRESHOLD_`/`MALLOC_TRIM_THRESHOLD_`
    (their choice is kept). Idempotent: later calls return the first call's answer.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux") or any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))
    return _applied
