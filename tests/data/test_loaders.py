"""train.loader: the shared-slot, plain-process and thread loaders give today's batches."""
from __future__ import annotations

import pytest
import torch

from egodistill.config import Config
from egodistill.data.dataset import MultimodalDataset, build_dataset, build_loader, collate
from egodistill.data import loaders
from egodistill.data.loaders import LOADERS, SharedSlotLoader, ThreadLoader, make_loader

MODS = ["rgb", "flow", "audio", "layout"]


def _small(cfg: Config) -> Config:
    cfg.data.num_frames, cfg.data.stride, cfg.data.size = 4, 2, 24
    cfg.train.seed, cfg.train.batch_size = 3, 3
    return cfg


def _reference(ds: MultimodalDataset, order: list[int], batch: int) -> list[dict]:
    """The batches as a worker builds them today, in this process."""
    return [collate(ds.__getitems__(order[i:i + batch])) for i in range(0, len(order), batch)]


def _assert_same(a, b, where: str = "batch") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("kind", LOADERS)
@pytest.mark.parametrize("workers", [0, 2])
def test_every_loader_gives_the_batches_of_the_old_path(synth_config, kind, workers, monkeypatch):
    monkeypatch.setattr(loaders, "_MIN_BYTES", 0)  # these tiny batches go through the slots too
    cfg = _small(synth_config)
    cfg.train.loader, cfg.train.workers = kind, workers
    ds = build_dataset(cfg, "train", train=True, modalities=MODS)
    ds.set_epoch(1)
    loader = build_loader(ds, cfg, train=True)
    order = list(loader.sampler if not isinstance(loader, ThreadLoader) else loader.batch_sampler.sampler)
    want = _reference(ds, order, cfg.train.batch_size)
    got = list(loader)  # kept all at once: slots must not be reused under held batches
    assert len(got) == len(want) == len(loader)
    for i, (g, w) in enumerate(zip(got, want)):
        _assert_same(g, w, f"batch {i}")
    assert "_shared_slot" not in got[0]


def test_shared_slots_are_reused_once_batches_are_dropped(synth_config, monkeypatch):
    monkeypatch.setattr(loaders, "_MIN_BYTES", 0)  # these tiny batches go through the slots too
    cfg = _small(synth_config)
    ds = build_dataset(cfg, "train", train=True, modalities=["rgb"])
    order = torch.utils.data.Subset(ds, [i % len(ds) for i in range(24)])
    loader = SharedSlotLoader(order, collate_fn=collate, slots=2, max_slots=2, batch_size=2, num_workers=1,
                              multiprocessing_context="fork")
    through_slots = []
    receive = loaders._Slots.receive
    monkeypatch.setattr(loaders._Slots, "receive",
                        lambda self, batch: through_slots.append(loaders._SLOT_KEY in batch) or receive(self, batch))
    want = _reference(ds, [i % len(ds) for i in range(24)], 2)
    for i, batch in enumerate(loader):  # each batch is dropped when the next arrives
        _assert_same(batch, want[i], f"batch {i}")
    # 12 batches through 2 slots: each slot was handed back and reused, none fell back.
    assert through_slots == [True] * 12


def test_an_unknown_loader_is_named(synth_config):
    cfg = _small(synth_config)
    ds = build_dataset(cfg, "train", train=True, modalities=["rgb"])
    with pytest.raises(ValueError, match="train.loader must be one of auto, shared, process, thread"):
        make_loader("fast", ds, batch_size=2, sampler=None, workers=1, collate_fn=collate, pin_memory=False)


@pytest.mark.parametrize("workers, kind", [(0, SharedSlotLoader), (1, ThreadLoader), (2, ThreadLoader),
                                           (3, SharedSlotLoader)])
def test_auto_builds_in_threads_up_to_two_workers_then_in_processes(synth_config, workers, kind):
    ds = build_dataset(_small(synth_config), "train", train=True, modalities=["rgb"])
    loader = make_loader("auto", ds, batch_size=2, sampler=None, workers=workers, collate_fn=collate, pin_memory=False)
    assert type(loader) is kind
