"""What every `prepare` tool shares: the summary, the worker pool, the progress bar."""
from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tqdm import tqdm

J = TypeVar("J")
R = TypeVar("R")


@dataclass
class PrepareSummary:
    """What a `prepare` run did. `line()` is the one-line summary the command prints."""

    command: str
    out: str = ""
    videos: int = 0          # videos written by this run
    skipped: int = 0         # videos already complete in the output (resume)
    frames: int = 0          # frames (or flow frames / boxes frames) written by this run
    samples: int = 0         # audio samples written by this run
    bytes: int = 0           # payload bytes written by this run
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def line(self) -> str:
        """Return e.g. `prepare frames: 12 videos (2 skipped), 3,456 frames, 41.2 MB, 5.3 s -> rgb.h5`."""
        parts = [f"{self.videos:,} videos ({self.skipped:,} skipped)"]
        if self.frames:
            parts.append(f"{self.frames:,} frames")
        if self.samples:
            parts.append(f"{self.samples:,} audio samples")
        parts.append(f"{self.bytes / 1e6:,.1f} MB")
        parts.append(f"{self.seconds:.1f} s")
        warn = f", {len(self.warnings)} warning(s)" if self.warnings else ""
        return f"{self.command}: {', '.join(parts)}{warn}" + (f" -> {self.out}" if self.out else "")


def progress(total: int, desc: str, enabled: bool = True) -> tqdm:
    """Return a tqdm bar over videos (disabled when `enabled` is False or there is nothing to do)."""
    return tqdm(total=total, desc=desc, unit="video", disable=not enabled or total == 0, leave=False,
                dynamic_ncols=True)


def imap_workers(fn: Callable[[J], R], jobs: Iterable[J], workers: int) -> Iterator[R]:
    """Yield `fn(job)` for every job: in this process when `workers <= 1`, else in a pool of
    `workers` processes, in completion order, with at most 2 * workers jobs in flight (so the
    results, e.g. a video's encoded frames, never pile up while the parent writes).

    An exception in a job is raised here, in the parent, after the pool is shut down.
    """
    jobs = iter(jobs)
    if workers <= 1:
        for job in jobs:
            yield fn(job)
        return
    # Workers start from a fresh process (forkserver), not a fork of this one: a fork inherits
    # OpenCV's / OpenMP's thread pools in a broken state once the parent has used them (deadlock).
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(max_workers=workers, initializer=_worker_init,
                             mp_context=multiprocessing.get_context(method)) as pool:
        pending: set[Future] = set()
        try:
            for job in jobs:
                pending.add(pool.submit(fn, job))
                if len(pending) >= 2 * workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        yield fut.result()
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
        finally:
            for fut in pending:
                fut.cancel()


def _worker_init() -> None:
    # Parallelism comes from the processes; OpenCV's own threads would oversubscribe the cores.
    import cv2

    cv2.setNumThreads(1)


def check_workers(workers: int) -> int:
    """Return `workers` if >= 1, else raise naming the option."""
    if int(workers) < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    return int(workers)


class Timer:
    """`with Timer() as t: ...; t.seconds`."""

    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.start


def natural_key(name: str) -> list[Any]:
    """Return a sort key that orders `P01_2` before `P01_10`."""
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def cpu_count() -> int:
    """Return the number of CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
