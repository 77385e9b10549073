"""What every `prepare` tool shares: the summary, the worker pool, the progress bar."""
from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from egodistill.atomic import nearest_existing

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
        parts = [f"{self.videos:,} videos ({self.skipped:,} skipped)", *_counts(self.frames, self.samples),
                 f"{self.bytes / 1e6:,.1f} MB", f"{self.seconds:.1f} s"]
        warn = f", {len(self.warnings)} warning(s)" if self.warnings else ""
        return f"{self.command}: {', '.join(parts)}{warn}" + (f" -> {self.out}" if self.out else "")


def _counts(frames: int, samples: int) -> list[str]:
    return ([f"{frames:,} frames"] if frames else []) + ([f"{samples:,} audio samples"] if samples else [])


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


# --------------------------------------------------------------------------------------------
# --dry-run: count, estimate from a sample, check the disk, write nothing
# --------------------------------------------------------------------------------------------


@dataclass
class DryRun:
    """What a `prepare` run would do (`--dry-run`); nothing is written. `line()` reports it;
    `ok` is False when the disk lacks the space the run needs."""

    command: str
    out: str
    videos: int = 0          # videos the run would write
    skipped: int = 0         # videos already complete in the output (or its .tmp)
    frames: int = 0          # frames it would write (counted, or from the files' headers)
    samples: int = 0         # audio samples it would write
    bytes: float = 0.0       # estimated payload
    seconds: float = 0.0     # estimated time with the given workers
    need: float = 0.0        # disk space needed: the payload, plus the copy of an existing store it resumes from
    free: int = 0            # free space where the output goes
    basis: str = ""          # what the estimate was measured on
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.free >= self.need

    def line(self) -> str:
        parts = [f"{self.videos:,} videos to write ({self.skipped:,} already complete)",
                 *_counts(self.frames, self.samples), f"~{self.bytes / 1e6:,.1f} MB", f"~{_duration(self.seconds)}"]
        space = (f"needs ~{self.need / 1e9:,.2f} GB, {self.free / 1e9:,.2f} GB free"
                 + ("" if self.ok else ": NOT ENOUGH SPACE"))
        basis = f" (estimated from {self.basis})" if self.basis else ""
        return f"{self.command} --dry-run: {', '.join(parts)}{basis}; {space} -> {self.out}; nothing written"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def complete_videos(path: str | os.PathLike) -> set[str]:
    """Return the videos complete in the store at `path` or in the `<path>.tmp` an interrupted run
    left (the one a rerun resumes), read-only; an empty set when neither can be read."""
    import h5py

    from egodistill.data.stores import tmp_path_of

    for p in (tmp_path_of(path), Path(path)):
        if p.is_file():
            try:
                with h5py.File(p, "r") as f:
                    return {k for k in f if f[k].attrs.get("complete", False)}
            except (OSError, KeyError):
                continue
    return set()


def free_space(path: str | os.PathLike) -> int:
    """Return the free bytes of the file system that `path` (or its nearest existing parent) is on."""
    import shutil

    return shutil.disk_usage(nearest_existing(Path(path).resolve())).free


# Room kept free beyond a video's payload: HDF5's per-element (a vlen heap object and its
# reference, ~48 bytes) and per-video (object header, attributes, index) overhead, and the
# metadata flushed on close. A write that meets a full disk crashes inside h5py (a segfault,
# not an exception), so the check must err on the side of room. HDF5_OVERHEAD is also the file
# growth per payload byte every --dry-run assumes (`dry_run_need`).
HDF5_OVERHEAD = 1.05
_PER_ELEMENT = 64
_RESERVE = 8 << 20


class SpaceCheck:
    """Checks, before anything is written to the stores at `paths`, that their disks have room.

    Built before the writers: on a resume that starts from a copy of a store (no `<path>.tmp`
    yet), the copy must fit. `check(video, (payload, elements), ...)`, one pair a store, before
    each video: its payload (known exactly: the encoded frames or samples are in memory) times
    the file growth per payload byte measured so far (5 % for the first video), plus per-element
    and fixed overhead; stores on one disk add up. Raises OSError naming the folder, the space
    needed and the space free.
    """

    def __init__(self, *paths: str | os.PathLike, resume: bool = True):
        from egodistill.data.stores import tmp_path_of

        self.paths = [Path(p) for p in paths]
        self.tmps = [tmp_path_of(p) for p in self.paths]
        self.written = [0] * len(paths)                 # payload bytes written through this check
        self.start: list[int] | None = None              # sizes of the .tmp files at the first check
        copies = [p.stat().st_size if resume and p.is_file() and not t.exists() else 0
                  for p, t in zip(self.paths, self.tmps)]
        copied = " and ".join(p.name for p, c in zip(self.paths, copies) if c)
        start = f"to start from a copy of {copied}" if copied else f"to start {' and '.join(p.name for p in self.paths)}"
        self._require([c + _RESERVE for c in copies], f"{start} (nothing written)")

    def check(self, video_id: str, *payloads: tuple[int, int]) -> None:
        """Raise unless the next video fits: `payloads` = (bytes, frames or blocks) a store."""
        sizes = [t.stat().st_size if t.exists() else 0 for t in self.tmps]
        if self.start is None:
            self.start = sizes
        needs = []
        for i, (nbytes, elements) in enumerate(payloads):
            grown = (sizes[i] - self.start[i]) / self.written[i] if self.written[i] else 0.0
            needs.append(int(nbytes * max(HDF5_OVERHEAD, grown)) + _PER_ELEMENT * elements + _RESERVE)
        tmps = " and ".join(t.name for t in self.tmps)
        kept = "".join(f"; {p.name} is unchanged" for p in self.paths if p.exists())
        self._require(needs, f"for video {video_id} (not written; {tmps} keep{'s' * (len(self.tmps) == 1)} the "
                             f"videos done so far and a rerun resumes from {'it' if len(self.tmps) == 1 else 'them'}"
                             f"{kept})")
        for i, (nbytes, _) in enumerate(payloads):
            self.written[i] += nbytes

    def _require(self, needs: list[int], what: str) -> None:
        """Raise unless each disk has the sum of the `needs` of the stores on it."""
        folders: dict[int, Path] = {}   # disk (st_dev) -> the first output folder on it
        totals: dict[int, int] = {}
        for path, need in zip(self.paths, needs):
            dev = nearest_existing(path.parent.absolute()).stat().st_dev
            folders.setdefault(dev, Path(os.path.abspath(path.parent)))
            totals[dev] = totals.get(dev, 0) + need
        for dev, need in totals.items():
            free = free_space(folders[dev])
            if free < need:
                raise OSError(f"not enough free disk space in {folders[dev]} {what}: needs ~{_size(need)}, "
                              f"{_size(free)} free")


def _size(nbytes: float) -> str:
    return f"{nbytes / 1e9:,.2f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:,.1f} MB"


def estimate(command: str, outs: list[str | os.PathLike], todo: list[tuple[str, int]], skipped: int, workers: int,
             run_sample: Callable[[int], tuple[int, int, int]], *, exact_bytes: int | None = None) -> DryRun:
    """Return the dry-run report of writing `todo` = [(video id, frames, or audio samples when the
    tool writes audio only)] to `outs`: `run_sample(i)` runs the real work of video i in memory
    and returns (payload bytes, frames, audio samples); it runs on the shortest video, and bytes
    and time are scaled by frames (or samples) from it. `exact_bytes`: the payload when known
    beforehand (JPEGs copied as they are)."""
    report = DryRun(command, ", ".join(map(str, outs)), videos=len(todo), skipped=skipped)
    total = sum(n for _, n in todo)
    if todo:
        i = min(range(len(todo)), key=lambda k: todo[k][1])
        with Timer() as t:
            nbytes, frames, samples = run_sample(i)
        units = max(1, frames or samples)
        scale = total / units if todo[i][1] else len(todo)
        report.bytes = exact_bytes if exact_bytes is not None else nbytes * scale
        report.seconds = t.seconds * scale / min(workers, len(todo))
        report.basis = f"video {todo[i][0]}: {frames or samples:,} {'frames' if frames else 'samples'} in {t.seconds:.2f} s"
        if samples and not frames:
            report.samples = total
        else:
            report.frames = total
            report.samples = int(samples * scale)
    report.need = dry_run_need(report.bytes, outs)
    report.free = free_space(outs[0])
    return report


def dry_run_need(nbytes: float, outs: list[str | os.PathLike], *, resume: bool = True) -> float:
    """Return the disk space a --dry-run reports as needed for `nbytes` of payload written to the
    stores `outs`: the payload times HDF5_OVERHEAD, plus each existing store a resume first copies
    to `<out>.tmp` (none when a `.tmp` is there already, or without `resume`), as `SpaceCheck` does."""
    from egodistill.data.stores import tmp_path_of

    copies = sum(Path(o).stat().st_size for o in outs
                 if resume and Path(o).is_file() and not tmp_path_of(o).exists())
    return nbytes * HDF5_OVERHEAD + copies
