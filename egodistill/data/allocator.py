"""Keep freed clip buffers in the heap, so the next clip does not page them in again.

A multimodal training item is a few tensors of MBs each, plus the decoded frames and buffers
freed after it (a 16x224x224 RGB clip is 2.4 MB as uint8; an audio clip of 128 mel-band rows
1.8 MB of float32; a batch of 8 is 8x that). When many such blocks are freed together the top of the heap
exceeds glibc's adaptive trim threshold and is handed back to the OS, and the next item
page-faults the memory in again. With float32 items this cost ~11 ms of a 41 ms rgb+flow+audio
item; with today's uint8 batches it is 1-2 points of the data-pipeline benchmark
(docs/data_pipeline.md). Raising both thresholds keeps that memory in the process; it costs at
most `trim_threshold` bytes of idle heap per process.
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
