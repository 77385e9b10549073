"""How batches reach the training process (`train.loader`, chosen by `build_loader`).

* `auto` (default): `thread` with up to `THREADS_UP_TO` workers, `shared` with more. A loader
  thread costs no copies (the training loop waits on the accelerator or on torch ops, which
  release the GIL), so one thread builds batches at the in-process rate, and two measured
  1.64-1.93x one on two cores (benchmarks/data_pipeline.py, six runs, 2026-12-03), ahead of two
  `shared` processes in each run. Past that, processes scale with the cores and threads do
  not: a part of each clip's time holds the GIL (HDF5 reads, Python bookkeeping; ~5-20% by the
  two-thread scaling), which caps four threads at ~2.5-3.5x.
* `shared`: torch's DataLoader worker processes, each writing its batches into a few
  shared-memory slots that it reuses across steps; a slot is reused once the main process
  holds no tensor of it. torch's own path instead moves every batch into fresh shared memory
  (`share_memory_`), which faults in every page of it each step: ~4-5 ms a clip of
  RGB+flow+audio (6.6 MB) against ~1 ms into a warm slot.
* `process`: torch's DataLoader as it is (fresh shared memory per batch).
* `thread`: `train.workers` threads of the training process build the batches (JPEG decoding,
  resizing, HDF5 and torch ops release the GIL for most of a clip's time): nothing crosses a
  process boundary, but the Python parts of the pipeline share one interpreter lock.

All three give the same batches (the views depend on (seed, epoch, index) only).
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler, SequentialSampler, get_worker_info
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils.data._utils.pin_memory import pin_memory as pin_batch

LOADERS = ("auto", "shared", "process", "thread")
# `auto` builds batches in threads up to this many workers (measured on a 2-core machine; more
# workers are processes: the GIL share of a clip's time would cap threads, see above).
THREADS_UP_TO = 2

_SLOT_KEY = "_shared_slot"  # (worker, slot) of a batch in flight; removed before the batch is handed out
_MIN_BYTES = 64 * 1024  # smaller tensors (labels, indices) travel torch's usual way


def _map_tensors(obj: Any, fn: Callable[[tuple, torch.Tensor], torch.Tensor], path: tuple = ()) -> Any:
    """Return `obj` with every tensor of at least `_MIN_BYTES` (at any depth of dicts) replaced by
    `fn(path, tensor)`, path being the keys leading to it; other values are kept."""
    if isinstance(obj, torch.Tensor):
        return fn(path, obj) if obj.numel() * obj.element_size() >= _MIN_BYTES else obj
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn, path + (k,)) for k, v in obj.items()}
    return obj


class SlotCollate:
    """A DataLoader `collate_fn` that writes each batch's large tensors into shared-memory slots.

    In a worker process, the collated batch's tensors are copied into one of the worker's slots
    (shared-memory buffers kept for the worker's life: their pages stay mapped, so the copy
    faults no pages in) and the batch records which slot (`_SLOT_KEY`). A slot stays taken
    until the main process has dropped every tensor of it (`SharedSlotLoader`). `state` is the
    `[workers, max_slots]` int8 shared table of taken slots, set by the loader before it forks
    its workers. A worker uses `slots` slots and adds one (up to `max_slots`) when none has
    come back within `wait` seconds (a caller that keeps batches); past that, a batch travels
    torch's usual way. In the main process (no workers) the batch is returned as collated.
    """

    def __init__(self, collate_fn: Callable[[list], Any], slots: int, max_slots: int = 32, wait: float = 0.02):
        self.collate_fn = collate_fn
        self.slots, self.max_slots, self.wait = int(slots), max(int(slots), int(max_slots)), float(wait)
        self.state: torch.Tensor | None = None
        self._buffers: dict[int, dict[tuple, torch.Tensor]] = {}  # slot -> path -> buffer (per worker)
        self._next = 0

    def __call__(self, items: list) -> Any:
        batch = self.collate_fn(items)
        info = get_worker_info()
        if info is None or self.state is None or not isinstance(batch, dict):
            return batch
        slot = self._take(info.id)
        if slot is None:
            return batch
        buffers = self._buffers.setdefault(slot, {})
        batch = _map_tensors(batch, lambda path, t: _copy_into(buffers, path, t))
        batch[_SLOT_KEY] = (info.id, slot)
        return batch

    def _take(self, worker: int) -> int | None:
        """Return a free slot of `worker`, marked taken (waiting up to `wait` s for the main
        process to free one, then adding a slot), or None when all `max_slots` stay taken."""
        row = self.state[worker]
        deadline = time.perf_counter() + self.wait
        while True:
            for k in range(self.slots):
                slot = (self._next + k) % self.slots
                if int(row[slot]) == 0:
                    row[slot] = 1
                    self._next = (slot + 1) % self.slots
                    return slot
            if time.perf_counter() > deadline:
                if self.slots == self.max_slots:
                    return None
                self.slots += 1
                continue
            time.sleep(0.0005)


def _copy_into(buffers: dict[tuple, torch.Tensor], path: tuple, t: torch.Tensor) -> torch.Tensor:
    """Return `t` copied into `buffers[path]`: a shared-memory tensor with `t`'s shape, dtype
    and strides (made, or remade when they change, e.g. for a smaller last batch)."""
    buf = buffers.get(path)
    if buf is None or buf.shape != t.shape or buf.dtype != t.dtype or buf.stride() != t.stride():
        buf = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype).share_memory_()
        buffers[path] = buf
    buf.copy_(t)
    return buf


class _Slots:
    """The main process's side of the slots: which batches still hold which slots."""

    def __init__(self, workers: int, max_slots: int):
        self.state = torch.zeros((workers, max_slots), dtype=torch.int8).share_memory_()
        self.held: list[tuple[int, int, list[StorageWeakRef]]] = []

    def receive(self, batch: Any) -> Any:
        """Return `batch` without its slot record; remember its slot until its tensors are gone."""
        if isinstance(batch, dict) and _SLOT_KEY in batch:
            worker, slot = batch.pop(_SLOT_KEY)
            refs: list[StorageWeakRef] = []
            _map_tensors(batch, lambda path, t: refs.append(StorageWeakRef(t.untyped_storage())) or t)
            self.held.append((worker, slot, refs))
        return batch

    def release(self) -> None:
        """Free the slots of every batch whose tensors (and views of them) no one holds any more."""
        keep = []
        for worker, slot, refs in self.held:
            if all(r.expired() for r in refs):
                self.state[worker, slot] = 0
            else:
                keep.append((worker, slot, refs))
        self.held = keep


class SharedSlotLoader(DataLoader):
    """torch's DataLoader whose workers reuse shared-memory slots (`SlotCollate`).

    A batch's tensors live in a worker's slot until the caller drops them (with CUDA, the
    DataLoader's pinning thread copies them out at once); a slot is handed back when every
    tensor of it, views included, is gone, checked each time the next batch is asked for.
    """

    def __init__(self, dataset: Dataset, *, collate_fn: Callable[[list], Any], slots: int = 0, max_slots: int = 32,
                 **kw: Any):
        prefetch = kw.get("prefetch_factor") or 2
        # Per worker: `prefetch` batches queued, one being built, one handed out, the caller's last one.
        super().__init__(dataset, collate_fn=SlotCollate(collate_fn, slots or prefetch + 3, max_slots), **kw)

    def __iter__(self) -> Iterator[Any]:
        if self.num_workers == 0:
            return super().__iter__()
        return self._iter_shared()

    def _iter_shared(self) -> Iterator[Any]:
        collate: SlotCollate = self.collate_fn  # type: ignore[assignment]
        # A fresh table for each iteration's workers (forked when iteration starts, below).
        slots = _Slots(self.num_workers, collate.max_slots)
        collate.state = slots.state
        batches = super().__iter__()
        while True:
            slots.release()  # before waiting: a worker may be waiting for a slot the caller has dropped
            try:
                batch = next(batches)
            except StopIteration:
                return
            yield slots.receive(batch)


class ThreadLoader:
    """Batches of `dataset` built by `threads` threads of this process, handed out in order.

    `batch_sampler` yields each batch's indices; `collate_fn` is applied to `dataset.__getitems__`
    (or the items one by one). At most `threads * prefetch` batches are built ahead.
    """

    def __init__(self, dataset: Dataset, batch_sampler: Sampler[list[int]], collate_fn: Callable[[list], Any],
                 threads: int, *, pin_memory: bool = False, prefetch: int = 2):
        self.dataset, self.batch_sampler, self.collate_fn = dataset, batch_sampler, collate_fn
        self.threads, self.pin_memory, self.prefetch = max(1, int(threads)), pin_memory, max(1, int(prefetch))

    def __len__(self) -> int:
        return len(self.batch_sampler)  # type: ignore[arg-type]

    def _fetch(self, indices: list[int]) -> Any:
        getitems = getattr(self.dataset, "__getitems__", None)
        items = getitems(indices) if getitems else [self.dataset[i] for i in indices]
        batch = self.collate_fn(items)
        return pin_batch(batch) if self.pin_memory else batch

    def __iter__(self) -> Iterator[Any]:
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="egodistill-loader")
        pending: deque = deque()
        try:
            for indices in self.batch_sampler:
                pending.append(pool.submit(self._fetch, list(indices)))
                if len(pending) >= self.threads * self.prefetch:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # also when the caller stops early: drop what was not started, wait for the rest
            pool.shutdown(wait=True, cancel_futures=True)


def make_loader(kind: str, dataset: Dataset, *, batch_size: int, sampler: Sampler | None, workers: int,
                collate_fn: Callable[[list], Any], pin_memory: bool) -> DataLoader | ThreadLoader:
    """Return the loader of `kind` (one of `LOADERS`) over `dataset`, batches of `batch_size` in
    `sampler`'s order (default: the dataset's order), the last batch possibly smaller."""
    if kind not in LOADERS:
        raise ValueError(f"train.loader must be one of {', '.join(LOADERS)}, got {kind!r}")
    if kind == "auto":
        kind = "thread" if 1 <= workers <= THREADS_UP_TO else "shared"
    if kind == "thread" and workers > 0:
        order = sampler if sampler is not None else SequentialSampler(dataset)  # type: ignore[arg-type]
        return ThreadLoader(dataset, BatchSampler(order, batch_size, drop_last=False), collate_fn, workers,
                            pin_memory=pin_memory)
    kw: dict[str, Any] = dict(
        batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=workers, collate_fn=collate_fn,
        drop_last=False, persistent_workers=False, pin_memory=pin_memory,
        multiprocessing_context="fork" if workers > 0 and "fork" in torch.multiprocessing.get_all_start_methods() else None,
    )
    return SharedSlotLoader(dataset, **kw) if kind == "shared" else DataLoader(dataset, **kw)
