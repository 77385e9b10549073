"""Distillation data on the tiny synthetic dataset: consistent and independent views, cache
build and replay."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from egodistill.config import Config
from egodistill.data.dataset import MultimodalDataset, build_dataset, collate
from egodistill.data.modalities import MODALITIES
from egodistill.data.views import ViewParams
from egodistill.distill.data import (
    CacheBuildDataset,
    CachedViewsDataset,
    IndependentViewsDataset,
    build_cache,
    teacher_batch,
)

TEACHERS = ["rgb", "flow", "audio"]


def small(cfg: Config) -> Config:
    cfg.data.num_frames = 4
    cfg.data.stride = 2
    cfg.data.size = 16
    cfg.data.test_clips = 1
    cfg.train.seed = 3
    cfg.train.workers = 0
    return cfg


def fake_ensemble(batch):
    """A deterministic 'teacher' whose logits are statistics of every modality of the view."""
    rgb = MODALITIES["rgb"].normalize(batch["rgb"]).flatten(2).mean(-1)  # as model_input normalises  # [B, V*...] -> per-sample numbers
    flow = MODALITIES["flow"].normalize(batch["flow"]).flatten(1).mean(-1, keepdim=True)
    audio = batch["audio"].flatten(1).std(-1, keepdim=True)
    b = rgb.shape[0]
    verb = torch.cat([flow, audio, rgb[:, :1], -flow], 1)  # [B, 4]
    noun = torch.cat([rgb[:, :1], audio, flow, batch["labels"]["noun"][:, None].float()], 1)
    return {"verb": verb.view(b, 4), "noun": noun.view(b, 4)}


def test_consistent_views_student_frames_are_exactly_the_teacher_subsample(synth_config):
    cfg = small(synth_config)
    cfg.data.num_frames = 8
    teachers = build_dataset(cfg, "train", train=True, modalities=TEACHERS)
    student = build_dataset(cfg, "train", train=True, modalities=["rgb"], frame_step=2)
    for i in range(len(teachers)):
        t, s = teachers[i], student[i]
        # the same drawn view, the student on every 2nd of the teachers' frames
        assert np.array_equal(ViewParams.from_array(s["views"][0]).frames,
                              ViewParams.from_array(t["views"][0]).frames[::2])
        assert torch.equal(s["rgb"], t["rgb"][:, ::2])


def test_independent_views_differ_and_each_side_is_reproducible(synth_config):
    cfg = small(synth_config)
    ds = IndependentViewsDataset(cfg, build_dataset(cfg, "train", train=True).samples, TEACHERS, "rgb", train=True)
    plain = MultimodalDataset(cfg, ds.samples, TEACHERS, train=True)
    differ = 0
    for i in range(len(ds)):
        item = ds[i]
        sv, tv = ViewParams.from_array(item["views"][0]), ViewParams.from_array(item["teacher_views"][0])
        differ += sv != tv
        assert torch.equal(item["rgb"], plain.load(i, [sv])["rgb"])
        again = plain.load(i, [tv])
        for m in TEACHERS:
            assert torch.equal(item["teacher:" + m], again[m])
        assert "flow" not in item  # the teachers' modalities only under teacher:*
    assert differ == len(ds)
    # A DataLoader's batch fetch (student and teacher buffers apart) gives the same items.
    fetched, one_by_one = collate(ds.__getitems__([2, 0, 1])), collate([ds[2], ds[0], ds[1]])
    for key in ("rgb", "teacher:rgb", "teacher:flow", "teacher:audio", "teacher_views"):
        assert torch.equal(fetched[key], one_by_one[key]), key
    assert not torch.equal(fetched["rgb"], fetched["teacher:rgb"])
    batch = collate([ds[0], ds[1]])
    tb = teacher_batch(batch)
    assert torch.equal(tb["rgb"], batch["teacher:rgb"]) and torch.equal(tb["views"], batch["teacher_views"])
    assert teacher_batch(tb) is tb  # a consistent batch is passed through


def test_cache_build_and_replay_are_consistent(synth_config, tmp_path):
    cfg = small(synth_config)
    samples = build_dataset(cfg, "train", train=True).samples
    base = MultimodalDataset(cfg, samples, TEACHERS, train=True)
    heads = {"verb": 4, "noun": 4}
    cache = build_cache(tmp_path / "c.h5", base, fake_ensemble, 3, {"k": 3}, heads, seed=5, batch_size=4, progress=False)
    assert len(cache) == len(samples) and cache.views == 3
    rows = CacheBuildDataset(base, 3, seed=5)
    i, k = len(samples) - 1, 2
    view = rows.view(i * 3 + k)
    assert np.array_equal(cache.view(i, k), view.to_array())
    expected = fake_ensemble(collate([base.load(i, [view])]))
    for h in heads:
        assert np.allclose(cache.logits(i, k)[h], expected[h][0].numpy(), atol=2e-3)  # fp16
    # the K views of a sample differ (K pre-drawn augmentations)
    assert len({tuple(cache.view(0, k)) for k in range(3)}) == 3

    replay = CachedViewsDataset(cfg, samples, "rgb", cache)
    for epoch in (0, 1):
        replay.set_epoch(epoch)
        for i in range(len(replay)):
            item = replay[i]
            k = replay.choice(i)
            assert "flow" not in item  # no teacher modality is loaded
            assert np.array_equal(item["views"][0].numpy(), cache.view(i, k))
            assert torch.equal(item["rgb"], base.load(i, [ViewParams.from_array(cache.view(i, k))])["rgb"])
            assert torch.equal(item["teacher_logits"]["verb"], torch.from_numpy(cache.logits(i, k)["verb"]).float())
    batch = collate([replay[0], replay[1]])
    assert batch["teacher_logits"]["noun"].shape == (2, 4)
    fetched = collate(replay.__getitems__([0, 1]))
    assert torch.equal(fetched["rgb"], batch["rgb"]) and torch.equal(fetched["teacher_logits"]["noun"], batch["teacher_logits"]["noun"])


def test_cache_for_other_samples_is_refused(synth_config, tmp_path):
    cfg = small(synth_config)
    samples = build_dataset(cfg, "train", train=True).samples
    base = MultimodalDataset(cfg, samples[:2], TEACHERS, train=True)
    cache = build_cache(tmp_path / "c.h5", base, fake_ensemble, 1, {}, {"verb": 4}, seed=0, batch_size=2, progress=False)
    with pytest.raises(ValueError, match="samples differ.*rebuild"):
        CachedViewsDataset(cfg, samples, "rgb", cache)


def test_model_input_gives_the_student_every_step_th_teacher_frame(synth_config):
    from egodistill.config import ModelConfig
    from egodistill.engine.inputs import model_input

    cfg = small(synth_config)
    cfg.data.num_frames = 8
    ds = build_dataset(cfg, "train", train=True, modalities=TEACHERS)
    batch = collate([ds[0], ds[1]])
    teacher = model_input(batch, ModelConfig(modality="rgb"))  # [B*V, 8, 3, S, S]
    student = model_input(batch, ModelConfig(modality="rgb", frame_step=2))  # [B*V, 4, 3, S, S]
    assert teacher.shape[1] == 8 and student.shape[1] == 4
    assert torch.equal(student, teacher[:, [0, 2, 4, 6]])


def test_independent_views_never_change_the_datasets_modalities(synth_config):
    """The student and teacher loads used to swap `self.modalities` for a moment (visible to any
    code reading it meanwhile, e.g. the stores it opens); they now name what they load."""
    cfg = small(synth_config)
    seen = []

    class Watched(IndependentViewsDataset):
        def store(self, name):
            seen.append(list(self.modalities))
            return super().store(name)

    ds = Watched(cfg, build_dataset(cfg, "train", train=True).samples, TEACHERS, "rgb", train=True)
    before = list(ds.modalities)
    item = ds[0]
    assert seen and all(m == before for m in seen) and ds.modalities == before
    assert "rgb" in item and all("teacher:" + m in item for m in TEACHERS)


def test_cache_build_loads_through_the_training_loader(synth_config, tmp_path, monkeypatch):
    """The teacher cache is built from `build_loader`'s batches (its workers, pinned memory), in row order."""
    import egodistill.data.dataset as dataset_module

    cfg = small(synth_config)
    base = MultimodalDataset(cfg, build_dataset(cfg, "train", train=True).samples[:3], TEACHERS, train=True)
    calls = []
    real = dataset_module.build_loader

    def spy(dataset, cfg_, **kw):
        calls.append((len(dataset), cfg_, kw))
        return real(dataset, cfg_, **kw)

    monkeypatch.setattr(dataset_module, "build_loader", spy)
    build_cache(tmp_path / "c.h5", base, fake_ensemble, 2, {}, {"verb": 4}, seed=0, batch_size=4, progress=False)
    assert calls == [(6, cfg, {"train": False, "batch_size": 4, "shuffle": False})]
