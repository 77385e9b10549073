"""A modality is a plug-in: one defined and registered here, with no edit to egodistill, gets its
own store, a dataset batch through the normal path (sharing the view with RGB), `prepare verify`
and `info`.

The toy modality "counter" stores one number per frame (the frame's own number) and loads a
view as `[T, 1, S, S]` frames filled with it: the loaded values show which frames were read.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from egodistill.config import Config
from egodistill.data.dataset import build_dataset, build_loader
from egodistill.data.modalities import (
    MODALITIES, FrameGeometry, Modality, Segment, frame_span, get_modality, register, unregister,
)
from egodistill.data.prepare.verify import verify_store
from egodistill.data.records import Sample
from egodistill.data.stores import RGBStore, Store, StoreWriter, open_store
from egodistill.data.views import ViewParams
from egodistill.pipelines.info import describe_model

SRC_HW = (64, 48)  # the frame size the counter store records


class CounterStore(Store):
    """Reads counter.h5: `/<video>` float32 [F], one value per frame, numbered from `first_frame`."""

    modality = "counter"
    authors_layout = "write one with CounterWriter"

    def first_frame(self, video_id: str) -> int:
        return int(self.attrs(video_id)["first_frame"])

    def num_frames(self, video_id: str) -> int:
        return int(self._entry(video_id).shape[0])

    def fps(self, video_id: str) -> float:
        return float(self.attrs(video_id)["fps"])

    def read(self, video_id: str, frame_numbers: Sequence[int]) -> np.ndarray:
        """Return the values of the frames `[T]` float32."""
        return self._entry(video_id)[()][np.asarray(frame_numbers) - self.first_frame(video_id)]


class CounterWriter(StoreWriter):
    """Writes counter.h5: `add_video(video_id, values, fps, first_frame)`."""

    modality = "counter"

    def add_video(self, video_id: str, values: np.ndarray, fps: float, first_frame: int) -> None:
        self._replace(video_id)
        ds = self._file.create_dataset(video_id, data=np.asarray(values, dtype=np.float32))
        ds.attrs.update(fps=float(fps), first_frame=int(first_frame))
        self._finish(ds)


class CounterModality(Modality):
    name = "counter"
    reader, writer = CounterStore, CounterWriter
    frames = True

    def channels(self, cfg: Config) -> int:
        return 1

    def geometry(self, store: CounterStore, sample: Sample) -> FrameGeometry:
        return FrameGeometry(*frame_span(store, sample), store.fps(sample.video_id), SRC_HW)

    def load(self, store: CounterStore, sample: Sample, view: ViewParams, cfg: Config, train: bool, *,
             segment: Segment, out: torch.Tensor | None = None) -> torch.Tensor:
        values = torch.from_numpy(store.read(segment.video_id, segment.frame_numbers(view)))
        return values.view(-1, 1, 1, 1).expand(-1, 1, cfg.data.size, cfg.data.size).contiguous()


@pytest.fixture
def counter() -> Iterator[Modality]:
    mod = register(CounterModality())
    yield mod
    unregister(mod.name)


@pytest.fixture
def counter_cfg(synth_config: Config, counter: Modality, tmp_path: Path) -> Config:
    """Return the tiny dataset's config with a counter store of every video beside its RGB store."""
    rgb = RGBStore(Path(synth_config.data.root) / synth_config.data.stores["rgb"])
    path = tmp_path / "counter.h5"
    with get_modality("counter").writer(path) as w:
        for vid in rgb.video_ids():
            first, n = rgb.first_frame(vid), rgb.num_frames(vid)
            w.add_video(vid, np.arange(first, first + n), rgb.fps(vid), first)
    cfg = dataclasses.replace(synth_config, data=dataclasses.replace(synth_config.data, num_frames=4, size=16),
                              train=dataclasses.replace(synth_config.train, workers=0))
    cfg.data.stores = {**synth_config.data.stores, "counter": str(path)}
    return cfg


def test_a_registered_modality_is_listed_and_opens_its_store(counter_cfg, counter):
    assert list(MODALITIES)[-1] == "counter" and get_modality("counter") is counter
    assert isinstance(open_store("counter", counter_cfg.data.stores["counter"]), CounterStore)
    assert verify_store(counter_cfg.data.stores["counter"]).ok


def test_alone_it_tells_the_frames_and_loads_them(counter_cfg):
    ds = build_dataset(counter_cfg, "train", train=True, modalities=["counter"])
    item = ds[0]
    seg, view = ds.segment(0), ViewParams.from_array(item["views"][0])
    assert seg.src_hw == SRC_HW  # its own geometry: no frame store is loaded beside it
    assert item["counter"].shape == (1, 4, 1, 16, 16)
    assert item["counter"][0, :, 0, 0, 0].tolist() == (seg.start_frame + view.frames).tolist()


def test_a_batch_shares_its_view_with_rgb(counter_cfg):
    ds = build_dataset(counter_cfg, "train", train=True, modalities=["rgb", "counter"])
    batch = next(iter(build_loader(ds, counter_cfg, train=True, batch_size=2)))
    assert batch["counter"].shape == (2, 1, 4, 1, 16, 16) and batch["rgb"].shape[:3] == (2, 1, 4)
    for b, index in enumerate(batch["index"].tolist()):
        view = ViewParams.from_array(batch["views"][b, 0])
        assert batch["counter"][b, 0, :, 0, 0, 0].tolist() == (ds.segment(index).start_frame + view.frames).tolist()
        again = ds.load(index, [view])  # the recorded view reproduces both modalities
        assert torch.equal(again["rgb"], batch["rgb"][b]) and torch.equal(again["counter"], batch["counter"][b])


def test_a_model_reads_it(counter_cfg):
    cfg = dataclasses.replace(counter_cfg, model=dataclasses.replace(counter_cfg.model, arch="cnn3d_nano",
                                                                      modality="counter"))
    rows = dict(describe_model(cfg, heads={"verb": 3}, timing=False))
    assert rows["view"] == "4x1x16x16" and rows["model"] == "cnn3d_nano (counter)"
