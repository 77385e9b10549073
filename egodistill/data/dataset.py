"""Samples + stores -> batches: `MultimodalDataset`, `collate`, `build_dataset`, `build_loader`.

One view per sample is drawn and applied to every modality (consistent teaching). Training
views are random but reproducible: the generator of sample `i` in epoch `e` is seeded with
`(train.seed, e, i)`, so a view does not depend on worker count, batch order or resumption.
Call `set_epoch(e)` before each epoch (workers are started per epoch and copy the dataset, so
they see it). Test items hold all `test_clips x test_crops` views.

Item: `{modality: [V,T,C,S,S], "layout": {key: [V,T,N,...]}, "labels": {head: int}, "id": str,
"index": int, "views": [V, D] float64}`; RGB and flow are uint8 unless `data.uint8_frames` is off,
audio is `[V,T,1,R,S]` (R mel-band rows); `engine.inputs.model_input` makes them model-ready. Batch: the same with a leading B
(labels `{head: LongTensor[B]}`, -1 where a sample has no label for a head).
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from egodistill.config import Config, resolve_path
from egodistill.data.allocator import keep_freed_buffers
from egodistill.data.gpu_decode import check_decode, view_loader
from egodistill.data.loaders import ThreadLoader, make_loader
from egodistill.data.modalities import (
    MODALITIES, DeviceClips, Segment, empty_stack_like, get_modality, same_memory, stack_keep_layout,
)
from egodistill.data.records import Sample
from egodistill.data.views import ViewParams, draw_train_view, test_views


class MultimodalDataset(Dataset):
    """Any subset of modalities over a list of samples; one shared view per item."""

    def __init__(self, cfg: Config, samples: list[Sample], modalities: list[str], train: bool, *, frame_step: int = 1):
        """`frame_step` > 1 loads every `frame_step`-th frame of each view (a student that sees
        fewer frames reads a fixed subsample of its teachers' frames); the recorded views are then
        the subsampled ones. With the default 1 a model may subsample instead (model.frame_step)."""
        if not modalities:
            raise ValueError("a dataset needs at least one modality, e.g. ['rgb']")
        if frame_step < 1:
            raise ValueError(f"frame_step must be >= 1, got {frame_step}")
        self.cfg = cfg
        self.samples = list(samples)
        self.modalities = list(modalities)
        self.train = train
        self.frame_step = frame_step
        self.epoch = 0
        self.paths: dict[str, str] = {}
        for name in self.modalities:
            get_modality(name)  # unknown names fail here, listing the valid ones
            view_loader(name, cfg)  # and, with data.decode=gpu, one that does not say how it loads there
            if name not in cfg.data.stores:
                raise FileNotFoundError(
                    f"modality {name!r} needs a store: set data.stores.{name} (configured: {', '.join(cfg.data.stores) or 'none'})")
            path = resolve_path(cfg, cfg.data.stores[name])
            if not path.is_file():
                raise FileNotFoundError(f"{name} store not found: {path} (data.stores.{name})")
            self.paths[name] = str(path)
        self._stores: dict[str, Any] = {}
        self._pid = None
        self._segments: dict[tuple[str, int, int], Segment] = {}
        self._check_videos()
        keep_freed_buffers()  # items are MBs each: do not hand them back to the OS and fault them in again

    # ----------------------------------------------------------------------------------------
    # Stores and segments
    # ----------------------------------------------------------------------------------------

    def store(self, name: str) -> Any:
        """Return this process's reader of modality `name`'s store (opened on first use)."""
        if self._pid != os.getpid():  # a forked worker opens its own readers
            self._stores, self._pid = {}, os.getpid()
        if name not in self._stores:
            store = MODALITIES[name].open_store(self.paths[name])
            if getattr(store, "layout", "ours") == "epic" and hasattr(store, "segment_starts"):
                # The authors' EPIC layout stores frames per segment; reads need each start frame.
                store.segment_starts.update({s.id: s.start_frame for s in self.samples})
            self._stores[name] = store
        return self._stores[name]

    def _frame_store(self) -> str | None:
        """Return the modality whose store tells the videos' frames: the first registered one that
        numbers frames (`Modality.frames`) among those loaded, else the first of all (rgb, which
        records the frame rate) when its store is configured; None when there is none."""
        framed = [name for name, mod in MODALITIES.items() if mod.frames]
        for name in framed:
            if name in self.paths:
                return name
        first = framed[0] if framed else None
        if first in self.cfg.data.stores and resolve_path(self.cfg, self.cfg.data.stores[first]).is_file():
            return first
        return None

    def _aux_store(self, name: str) -> Any:
        """Return a store used only for frame geometry (opened even if the modality is not loaded)."""
        if name in self.paths:
            return self.store(name)
        key = f"_aux_{name}"
        if self._pid != os.getpid():
            self._stores, self._pid = {}, os.getpid()
        if key not in self._stores:
            self._stores[key] = MODALITIES[name].open_store(str(resolve_path(self.cfg, self.cfg.data.stores[name])))
        return self._stores[key]

    def _check_videos(self) -> None:
        """Fail at construction when a sample's video is absent from a store it needs."""
        for name in self.modalities:
            store = self.store(name)
            have = set(store.video_ids())
            missing = sorted({s.video_id for s in self.samples} - have)
            if missing:
                ids = [s.id for s in self.samples if s.video_id in set(missing)]
                raise KeyError(
                    f"{self.paths[name]}: {len(missing)} video(s) of the samples are not in the {name} store, "
                    f"e.g. video {missing[0]} (sample {ids[0]}); missing videos: {', '.join(missing[:5])}")

    def segment(self, index: int) -> Segment:
        """Return where sample `index`'s frames are (resolving whole-video samples with the store)."""
        sample = self.samples[index]
        name = self._frame_store()
        if name is None:
            framed = ", ".join(n for n, m in MODALITIES.items() if m.frames)
            raise ValueError(
                f"sample {sample.id}: the frame rate and frame count come from a store of {framed}; "
                f"configure one in data.stores")
        key = (sample.video_id, sample.start_frame, sample.stop_frame)
        if key in self._segments:
            return self._segments[key]
        geo = MODALITIES[name].geometry(self._aux_store(name), sample)
        if sample.whole_video:
            start, n = geo.first_frame, geo.num_frames
        else:
            start, n = sample.start_frame, sample.num_frames
        if n < 1:
            raise ValueError(f"sample {sample.id} (video {sample.video_id}): frames {sample.start_frame}..{sample.stop_frame} "
                             f"are empty")
        seg = Segment(sample.video_id, start, n, geo.first_frame, geo.fps, geo.src_hw)
        self._segments[key] = seg
        return seg

    # ----------------------------------------------------------------------------------------
    # Views and items
    # ----------------------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that seeds training views (call before iterating a loader each epoch)."""
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        """Return the generator of sample `index` in the current epoch."""
        return np.random.default_rng([int(self.cfg.train.seed), self.epoch, int(index)])

    def draw_view(self, index: int, rng: np.random.Generator) -> ViewParams:
        """Return a random training view of sample `index`."""
        seg = self.segment(index)
        return draw_train_view(seg.num_frames, self.cfg.data, rng, seg.src_hw)

    def test_views(self, index: int) -> list[ViewParams]:
        """Return the K clips x C crops test views of sample `index`."""
        seg = self.segment(index)
        return test_views(seg.num_frames, self.cfg.data, seg.src_hw)

    def load(self, index: int, views: list[ViewParams], out: dict[str, torch.Tensor] | None = None,
             modalities: list[str] | None = None) -> dict[str, Any]:
        """Return the item of sample `index` seen through `views` (also replays cached views).

        `out`: {modality: tensor `[V, ...]`} slots of batch buffers that the loaders may write
        into (see `__getitems__`); the item holds whatever they returned. `modalities`: which of
        the dataset's modalities to load (default all of them).
        """
        sample = self.samples[index]
        seg = self.segment(index)
        item: dict[str, Any] = {}
        for name in self.modalities if modalities is None else modalities:
            mod = view_loader(name, self.cfg)  # its Modality, or undecoded JPEGs (data.decode=gpu)
            store = self.store(name)
            slot = None if out is None else out.get(name)
            try:
                per_view = [mod.load(store, sample, v, self.cfg, self.train, segment=seg,
                                     out=None if slot is None else slot[j]) for j, v in enumerate(views)]
            except (KeyError, IndexError) as e:  # a video or frame the store does not have
                raise KeyError(f"{name} store {self.paths[name]}: sample {sample.id} (video {sample.video_id}): {e}") from e
            except ValueError as e:  # e.g. an undecodable frame
                raise ValueError(f"{name} store {self.paths[name]}: sample {sample.id} (video {sample.video_id}): {e}") from e
            if slot is not None and all(isinstance(p, torch.Tensor) and same_memory(p, slot[j]) for j, p in enumerate(per_view)):
                item[name] = slot  # every view was written in place
            else:
                item[name] = mod.collate(per_view)
        item["labels"] = dict(sample.labels)
        item["id"] = sample.id
        item["index"] = index
        item["views"] = torch.from_numpy(np.stack([v.to_array() for v in views]))
        return item

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.get(index)

    def get(self, index: int, out: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
        """Return item `index` (its training view, or all its test views); `out` as in `load`.
        Datasets that build items another way override this."""
        if self.train:
            views = [self.draw_view(index, self.rng(index))]
        else:
            views = self.test_views(index)
        if self.frame_step > 1:
            views = [v.subsample(self.frame_step) for v in views]
        return self.load(index, views, out)

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        """Return the items of `indices`, as a DataLoader worker fetches a batch (`get` each).

        Each tensor entry of the batch gets one buffer `[B, ...]`, laid out like the first
        item's; the loaders write the later items straight into their slots (or their results
        are copied there), and `collate` hands each buffer out without stacking: the batch is
        written once instead of twice. Subclasses customise items by overriding `get` (one that
        overrides `__getitem__` instead gets its items one by one).
        """
        if type(self).__getitem__ is not MultimodalDataset.__getitem__:
            return [self[i] for i in indices]  # a subclass builds items its own way: keep it
        buffers: dict[str, torch.Tensor] = {}
        items = []
        for b, index in enumerate(indices):
            item = self.get(index, {k: buf[b] for k, buf in buffers.items()} if b else None)
            if len(indices) > 1:
                for key, t in item.items():
                    if not isinstance(t, torch.Tensor) or key == "views":
                        continue
                    if b == 0:
                        buffers[key] = empty_stack_like(t, len(indices))
                    if key in buffers and buffers[key][b].shape == t.shape and buffers[key].dtype == t.dtype:
                        slot = buffers[key][b]
                        if not same_memory(t, slot):
                            slot.copy_(t)
                        item[key] = slot
            items.append(item)
        return items


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Return items stacked into a batch: tensors gain a leading B, labels become LongTensor[B]."""
    batch: dict[str, Any] = {}
    for key in items[0]:
        if key in ("labels", "id", "index", "views"):
            continue
        first = items[0][key]
        if isinstance(first, dict):
            batch[key] = {k: stack_keep_layout([it[key][k] for it in items]) for k in first}
        elif isinstance(first, DeviceClips):  # data.decode=gpu: finished on the device (to_device)
            batch[key] = type(first).stack([it[key] for it in items])
        else:
            batch[key] = stack_keep_layout([it[key] for it in items])
    heads = sorted({h for it in items for h in it["labels"]})
    batch["labels"] = {h: torch.tensor([it["labels"].get(h, -1) for it in items], dtype=torch.long) for h in heads}
    batch["id"] = [it["id"] for it in items]
    batch["index"] = torch.tensor([it["index"] for it in items], dtype=torch.long)
    batch["views"] = torch.stack([it["views"] for it in items])
    return batch


class EpochOrderSampler(Sampler[int]):
    """This process's share of a random order of `size` items that depends only on (seed, epoch),
    starting after `skip` items (the part of the epoch a resumed run already consumed). The one
    epoch order: the trainer's, `build_loader`'s default and `UnlabelledMix`'s cycles.

    The order is padded by wrapping around to a multiple of `world` so every process takes the
    same number of steps; process r takes items r, r + world, ...
    """

    def __init__(self, size: int, seed: int, epoch: int | Callable[[], int], rank: int = 0, world: int = 1,
                 skip: int = 0):
        # `epoch` may be a callable read at each iteration: a loader built once then follows
        # the dataset's set_epoch.
        self.size, self.seed, self.epoch = int(size), int(seed), epoch
        self.rank, self.world, self.skip = int(rank), int(world), int(skip)

    def order(self) -> list[int]:
        epoch = int(self.epoch() if callable(self.epoch) else self.epoch)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(self.size, generator=g).tolist()
        per_rank = math.ceil(self.size / self.world) if self.size else 0
        perm = (perm * (self.world + 1))[: per_rank * self.world]
        return perm[self.rank:: self.world][self.skip:]

    def __len__(self) -> int:
        return len(self.order())

    def __iter__(self):
        return iter(self.order())


def build_dataset(
    cfg: Config, split: str, *, train: bool, modalities: list[str] | None = None, samples: list[Sample] | None = None,
    frame_step: int = 1,
) -> MultimodalDataset:
    """Return the dataset of `split` (read with `build_reader(cfg)` unless `samples` is given).

    `modalities` defaults to the model's input modality (`cfg.model.modality`).
    """
    if samples is None:
        from egodistill.data.annotations import build_reader

        samples = build_reader(cfg).samples(split)
    return MultimodalDataset(cfg, samples, modalities or [cfg.model.modality], train, frame_step=frame_step)


def build_loader(
    dataset: MultimodalDataset, cfg: Config, *, train: bool, batch_size: int | None = None,
    shuffle: bool | None = None, sampler: Sampler | None = None,
) -> DataLoader | ThreadLoader:
    """Return a loader over `dataset` with `collate`, `cfg.train.workers` workers of the kind
    `cfg.train.loader` (`egodistill.data.loaders`: a DataLoader, or a thread pool's iterable).

    Training shuffles with `EpochOrderSampler` (order seeded by train.seed and the dataset's
    current epoch) unless a sampler is given. Workers are not persistent, so each epoch's workers see
    the dataset's current epoch. With CUDA, batches are pinned (page-locked), so the trainer's
    `non_blocking` host-to-device copies overlap with compute instead of waiting.
    """
    if batch_size is None:
        batch_size = cfg.train.batch_size if train else cfg.train.eval_batch_size
    if shuffle is None:
        shuffle = train
    if sampler is None and shuffle:
        sampler = EpochOrderSampler(len(dataset), cfg.train.seed, lambda: getattr(dataset, "epoch", 0))
    check_decode(cfg)  # data.decode=gpu without CUDA fails here, before any worker starts
    return make_loader(cfg.train.loader, dataset, batch_size=batch_size, sampler=sampler, workers=int(cfg.train.workers),
                       collate_fn=collate, pin_memory=torch.cuda.is_available())
