"""MultimodalDataset, collate and loaders on the tiny synthetic dataset (`egodistill synth`)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from egodistill.config import Config
from egodistill.data.dataset import EpochOrderSampler, MultimodalDataset, build_dataset, build_loader, collate
from egodistill.data.modalities import MODALITIES
from egodistill.data.records import WHOLE_VIDEO
from egodistill.data.views import ViewParams

ALL = ["rgb", "flow", "audio", "layout"]


def _small(cfg: Config, **data) -> Config:
    cfg.data.num_frames = 4
    cfg.data.stride = 2
    cfg.data.size = 24
    cfg.data.test_clips = 2
    cfg.data.test_crops = 1
    cfg.data.color_jitter = 0.3
    cfg.data.audio.time_mask = 8
    cfg.data.audio.freq_mask = 8
    for k, v in data.items():
        setattr(cfg.data, k, v)
    cfg.train.seed = 7
    return cfg


def test_training_item_holds_every_modality_in_one_view(synth_config):
    cfg = _small(synth_config)
    ds = build_dataset(cfg, "train", train=True, modalities=ALL)
    item = ds[0]
    sample = ds.samples[0]
    assert item["rgb"].shape == (1, 4, 3, 24, 24) and item["rgb"].dtype == torch.float32
    assert item["flow"].shape == (1, 4, 3, 24, 24)
    assert item["audio"].shape == (1, 4, 1, 24, 24)  # model_input repeats it to 3 channels
    assert item["layout"]["boxes"].shape == (1, 4, cfg.data.max_boxes, 4)
    assert item["layout"]["mask"].dtype == torch.bool
    assert item["labels"] == sample.labels and set(sample.labels) == {"verb", "noun"}
    assert item["id"] == sample.id and item["index"] == 0
    view = ViewParams.from_array(item["views"][0])
    assert item["views"].shape == (1, 7 + 4)
    assert 0 <= view.frames.min() and view.frames.max() < sample.num_frames
    # The recorded view reproduces the item exactly (what the teacher-logit cache relies on).
    again = ds.load(0, [view])
    for m in ("rgb", "flow", "audio"):
        assert torch.equal(again[m], item[m])
    assert torch.equal(again["layout"]["boxes"], item["layout"]["boxes"])


def test_training_views_are_seeded_by_seed_epoch_and_index(synth_config):
    cfg = _small(synth_config)
    ds = build_dataset(cfg, "train", train=True, modalities=["rgb"])
    a = ds[1]
    assert torch.equal(a["views"], ds[1]["views"]) and torch.equal(a["rgb"], ds[1]["rgb"])
    ds.set_epoch(1)
    views_e1 = [ds[i]["views"] for i in range(len(ds))]
    ds.set_epoch(0)
    views_e0 = [ds[i]["views"] for i in range(len(ds))]
    assert torch.equal(views_e0[1], a["views"])
    assert any(not torch.equal(x, y) for x, y in zip(views_e0, views_e1))
    other = build_dataset(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=8)), "train", train=True,
                          modalities=["rgb"])
    assert any(not torch.equal(other[i]["views"], views_e0[i]) for i in range(len(ds)))


def test_test_items_hold_all_clips_and_crops_deterministically(synth_config):
    cfg = _small(synth_config, test_clips=2, test_crops=3)
    ds = build_dataset(cfg, "validation", train=False, modalities=["rgb", "layout"])
    item = ds[0]
    assert item["rgb"].shape == (6, 4, 3, 24, 24) and item["layout"]["boxes"].shape[:2] == (6, 4)
    assert torch.equal(item["rgb"], ds[0]["rgb"])
    views = [ViewParams.from_array(v) for v in item["views"]]
    assert [v.flip for v in views] == [False] * 6
    h, w = ds.segment(0).src_hw
    assert len({v.crop for v in views}) == (1 if h == w else 3)  # square frames: the three crops coincide
    assert len({tuple(v.frames) for v in views}) <= 2 and all((v.frames == views[0].frames).all() for v in views[:3])


def test_loaders_pin_batches_only_when_cuda_can_use_them(synth_config, monkeypatch):
    cfg = _small(synth_config)
    cfg.train.workers = 0
    ds = build_dataset(cfg, "train", train=True, modalities=["rgb"])
    assert not build_loader(ds, cfg, train=True).pin_memory  # this machine: no GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert build_loader(ds, cfg, train=False).pin_memory


def test_loader_with_two_workers_gives_the_batches_of_the_main_process(synth_config):
    cfg = _small(synth_config)
    cfg.train.batch_size = 3
    ds = build_dataset(cfg, "train", train=True, modalities=["rgb", "audio", "layout"])
    ds.set_epoch(2)
    cfg.train.workers = 0
    serial = list(build_loader(ds, cfg, train=True))
    cfg.train.workers = 2
    parallel = list(build_loader(ds, cfg, train=True))
    assert len(serial) == len(parallel) == -(-len(ds) // 3)
    for s, p in zip(serial, parallel):
        assert s["id"] == p["id"]
        assert s["rgb"].shape == (len(s["id"]), 1, 4, 3, 24, 24)
        assert torch.equal(s["rgb"], p["rgb"]) and torch.equal(s["audio"], p["audio"])
        assert torch.equal(s["layout"]["boxes"], p["layout"]["boxes"])
        assert torch.equal(s["labels"]["verb"], p["labels"]["verb"]) and s["labels"]["verb"].dtype == torch.long
        assert s["views"].shape == (len(s["id"]), 1, 11)
    ids = [i for b in serial for i in b["id"]]
    assert sorted(ids) == sorted(s.id for s in ds.samples)


def _assert_batches_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a["id"] == b["id"]
    for key, x in a.items():
        if isinstance(x, torch.Tensor):
            assert x.dtype == b[key].dtype and torch.equal(x, b[key]), key
        elif isinstance(x, dict):
            assert x.keys() == b[key].keys() and all(torch.equal(x[k], b[key][k]) for k in x), key


@pytest.mark.parametrize("train,jitter", [(True, 0.0), (True, 0.3), (False, 0.0)])
def test_a_fetched_batch_equals_the_items_collated_and_is_written_once(synth_config, monkeypatch, train, jitter):
    # DataLoaders fetch a batch with __getitems__: items written into one buffer per modality.
    cfg = _small(synth_config, color_jitter=jitter)  # jitter: float RGB, copied into the buffer
    cfg.data.audio.n_mels = 16  # fewer bands than S = 24: audio ships band rows
    ds = build_dataset(cfg, "train", train=train, modalities=ALL)
    ds.set_epoch(1)
    idx = [3, 0, 5, 1]
    expected = collate([ds[i] for i in idx])
    in_place = {m: 0 for m in ("rgb", "flow", "audio")}
    for m in in_place:
        cls, load = type(MODALITIES[m]), type(MODALITIES[m]).load

        def spy(self, *args, out=None, _load=load, _m=m, **kw):
            got = _load(self, *args, out=out, **kw)
            in_place[_m] += out is not None and got.data_ptr() == out.data_ptr()
            return got

        monkeypatch.setattr(cls, "load", spy)
    items = ds.__getitems__(idx)
    batch = collate(items)
    _assert_batches_equal(batch, expected)
    views = batch["views"].shape[1]
    # Items after the first are written straight into their slots (jittered RGB is float: copied).
    assert in_place == {"rgb": 0 if train and jitter else 3 * views, "flow": 3 * views, "audio": 3 * views}
    for m in in_place:
        assert batch[m].data_ptr() == items[0][m].data_ptr()  # collate handed out the buffer: no second copy
    assert batch["flow"].dtype == torch.uint8 and batch["audio"].shape[2:] == (4, 1, 16, 24)


def test_a_subclass_that_overrides_getitem_keeps_its_items_in_a_fetched_batch(synth_config):
    class Zeroed(MultimodalDataset):
        def __getitem__(self, index):
            item = super().__getitem__(index)
            item["rgb"] = torch.zeros_like(item["rgb"])
            return item

    cfg = _small(synth_config, color_jitter=0.0)
    ds = Zeroed(cfg, build_dataset(cfg, "train", train=True, modalities=["rgb"]).samples, ["rgb"], train=True)
    assert not collate(ds.__getitems__([0, 1]))["rgb"].any()


def test_one_epoch_order_for_the_trainer_and_the_default_loader(synth_config):
    """The loader's default training order is the trainer's `EpochOrderSampler` (one sampler,
    one seed formula), taken at the dataset's current epoch."""
    cfg = _small(synth_config)
    ds = build_dataset(cfg, "train", train=True, modalities=["layout"])
    orders = set()
    for e in range(6):
        ds.set_epoch(e)
        sampler = build_loader(ds, cfg, train=True).sampler
        assert isinstance(sampler, EpochOrderSampler)
        order = list(sampler)
        assert sorted(order) == list(range(len(ds))) and list(sampler) == order
        assert order == EpochOrderSampler(len(ds), cfg.train.seed, e).order()
        orders.add(tuple(order))
    assert len(orders) > 1


def test_a_loader_built_once_follows_set_epoch(synth_config):
    """A caller that builds the training loader once and calls set_epoch each epoch gets each
    epoch's order, as a loader built anew would."""
    cfg = _small(synth_config)
    ds = build_dataset(cfg, "train", train=True, modalities=["layout"])
    sampler = build_loader(ds, cfg, train=True).sampler
    for e in range(4):
        ds.set_epoch(e)
        assert list(sampler) == EpochOrderSampler(len(ds), cfg.train.seed, e).order()


def test_student_dataset_with_frame_step_reads_every_second_teacher_frame(synth_config):
    cfg = _small(synth_config, num_frames=8)
    teacher = build_dataset(cfg, "train", train=True, modalities=["rgb"])
    student = build_dataset(cfg, "train", train=True, modalities=["rgb"], frame_step=2)
    t, s = teacher[2], student[2]
    assert s["rgb"].shape[1] == 4 and t["rgb"].shape[1] == 8
    assert torch.equal(s["rgb"][0], t["rgb"][0, ::2])
    assert ViewParams.from_array(s["views"][0]) == ViewParams.from_array(t["views"][0]).subsample(2)


def test_whole_video_samples_resolve_with_the_store(synth_config):
    cfg = _small(synth_config)
    base = build_dataset(cfg, "train", train=False, modalities=["rgb"])
    s0 = base.samples[0]
    whole = dataclasses.replace(s0, start_frame=1, stop_frame=WHOLE_VIDEO)
    ds = MultimodalDataset(cfg, [whole], ["rgb"], train=False)
    seg = ds.segment(0)
    store = ds.store("rgb")
    assert (seg.start_frame, seg.num_frames) == (store.first_frame(s0.video_id), store.num_frames(s0.video_id))
    assert ds[0]["rgb"].shape[:2] == (2, 4)


def test_missing_stores_fail_at_construction_and_missing_samples_name_store_and_id(synth_config, tmp_path):
    cfg = _small(synth_config)
    samples = build_dataset(cfg, "train", train=False, modalities=["rgb"]).samples
    cfg.data.stores = dict(cfg.data.stores, audio=str(tmp_path / "nope.h5"))
    with pytest.raises(FileNotFoundError, match="audio store not found.*nope.h5"):
        MultimodalDataset(cfg, samples, ["rgb", "audio"], train=True)
    del cfg.data.stores["audio"]
    with pytest.raises(FileNotFoundError, match="data.stores.audio"):
        MultimodalDataset(cfg, samples, ["audio"], train=True)
    with pytest.raises(KeyError, match="unknown modality 'depth'"):
        MultimodalDataset(cfg, samples, ["depth"], train=True)
    ghost = dataclasses.replace(samples[0], id="P99_01_000", video_id="P99_01")
    with pytest.raises(KeyError, match=r"rgb\.h5.*P99_01.*P99_01_000"):
        MultimodalDataset(cfg, [ghost], ["rgb"], train=True)
    # A sample that runs past its video's end fails when loaded, naming the store and the sample.
    long = dataclasses.replace(samples[0], stop_frame=samples[0].stop_frame + 100_000)
    ds = MultimodalDataset(cfg, [long], ["rgb"], train=False)
    ds.cfg.data.test_clips = 1
    with pytest.raises(KeyError, match=rf"rgb store .*rgb\.h5: sample {long.id}"):
        ds[0]


def test_collate_marks_missing_labels():
    items = [
        {"rgb": torch.zeros(1, 2, 3, 4, 4), "labels": {"verb": 3, "noun": 1}, "id": "a", "index": 0,
         "views": torch.zeros(1, 9, dtype=torch.float64), "layout": {"boxes": torch.zeros(1, 2, 5, 4)}},
        {"rgb": torch.ones(1, 2, 3, 4, 4), "labels": {}, "id": "b", "index": 5,
         "views": torch.ones(1, 9, dtype=torch.float64), "layout": {"boxes": torch.ones(1, 2, 5, 4)}},
    ]
    batch = collate(items)
    assert batch["rgb"].shape == (2, 1, 2, 3, 4, 4) and batch["rgb"][1].eq(1).all()
    assert batch["labels"]["verb"].tolist() == [3, -1] and batch["labels"]["noun"].tolist() == [1, -1]
    assert batch["id"] == ["a", "b"] and batch["index"].tolist() == [0, 5]
    assert batch["views"].shape == (2, 1, 9) and batch["layout"]["boxes"].shape == (2, 1, 2, 5, 4)
