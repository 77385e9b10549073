"""Unlabelled clips for distillation (`distill.unlabelled`).

A distilled student learns from its teachers' soft targets, so it can learn from clips nobody
labelled. `unlabelled_samples(cfg, reader)` returns them:

* `split`: a split of the annotation reader read without labels (EPIC's `test` timestamps, the
  synthetic dataset's `unlabelled` split); any labels in it are dropped;
* `videos` + `window` + `hop`: every `window`-frame window of these videos, starting at the
  store's first frame and every `hop` frames after (a video shorter than `window` gives one
  window of all its frames); ids `<video>@<start>-<stop>`, frame counts from the RGB store.

They train mixed with the labelled samples: `UnlabelledMix` makes epoch e of all labelled
samples plus `round(ratio * labelled)` unlabelled ones, cycling through a seeded order of the
unlabelled samples so that each is seen once before any is seen again (`ratio` 0: all of them in
every epoch, no wrapper). Their labels are -1, so the loss is the KD term alone
(`engine.losses.label_loss`). Model selection and the dataset weights stay on the labelled
held-out split; unlabelled samples of held-out videos are left out.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch

from egodistill.config import Config, resolve_path
from egodistill.data.records import Sample


def window_samples(store, videos: list[str], window: int, hop: int, *, where: str) -> list[Sample]:
    """Return the `window`-frame windows, `hop` frames apart, of `videos` in frame store `store`
    (`.video_ids()`, `.first_frame(v)`, `.num_frames(v)`); `where` names the store in errors."""
    if window < 1 or hop < 1:
        raise ValueError(f"distill.unlabelled: window and hop must be >= 1 frame, got window={window}, hop={hop}")
    have = set(store.video_ids())
    samples = []
    for vid in videos:
        if vid not in have:
            raise KeyError(f"distill.unlabelled.videos: video {vid!r} is not in the {where} "
                           f"({len(have)} videos, e.g. {', '.join(sorted(have)[:3]) or 'none'})")
        first, count = int(store.first_frame(vid)), int(store.num_frames(vid))
        last = first + count - 1
        starts = range(first, max(first, last - window + 1) + 1, hop)
        for start in starts:
            stop = min(start + window - 1, last)
            samples.append(Sample(id=f"{vid}@{start}-{stop}", video_id=vid, start_frame=start, stop_frame=stop))
    return samples


def unlabelled_samples(cfg: Config, reader) -> list[Sample]:
    """Return the unlabelled samples `cfg.distill.unlabelled` names (split first, then windows),
    without labels; [] when it names none."""
    u = cfg.distill.unlabelled
    samples: list[Sample] = []
    if u.split:
        samples += [dataclasses.replace(s, labels={}, all_noun_classes=()) for s in reader.samples(u.split)]
    if u.videos:
        if "rgb" not in cfg.data.stores:
            raise ValueError("distill.unlabelled.videos: the windows are counted in the rgb store's frames; "
                             "set data.stores.rgb")
        from egodistill.data.stores import RGBStore

        path = resolve_path(cfg, cfg.data.stores["rgb"])
        store = RGBStore(path)
        if getattr(store, "layout", "ours") == "epic":
            raise ValueError(f"distill.unlabelled.videos: {path} is in the authors' per-segment layout, which has no "
                             f"frames outside the annotated segments; pack the videos with `egodistill prepare frames`")
        samples += window_samples(store, list(u.videos), u.window, u.hop or u.window, where=f"rgb store {path}")
    return samples


def check_ids(labelled: list[Sample], unlabelled: list[Sample], where: str) -> None:
    """Raise when an unlabelled sample's id repeats, or is also a labelled sample's id."""
    seen = {s.id for s in labelled}
    for s in unlabelled:
        if s.id in seen:
            raise ValueError(f"{where}: sample id {s.id!r} (video {s.video_id}) appears twice among the "
                             f"labelled and unlabelled training samples; ids must be unique")
        seen.add(s.id)


def drop_videos(samples: list[Sample], videos: set[str]) -> tuple[list[Sample], int]:
    """Return (the samples whose video is not in `videos`, how many were dropped)."""
    kept = [s for s in samples if s.video_id not in videos]
    return kept, len(samples) - len(kept)


class UnlabelledMix(torch.utils.data.Dataset):
    """The training samples of one epoch: all `labelled` samples of `base` (its indices
    0..L-1) and `per_epoch` of its unlabelled ones (indices L..L+U-1).

    Position L + j of epoch e is unlabelled sample number p = e * per_epoch + j of an endless
    sequence made of seeded orders of the U unlabelled samples, one order per pass (pass p // U
    takes order `EpochOrderSampler(U, seed, pass)`): every unlabelled sample is used once
    before any is used again, and an epoch depends only on (seed, epoch). Items are `base`'s own
    (their "index" is the base index, which the teacher cache and the views are keyed by).
    """

    def __init__(self, base, labelled: int, per_epoch: int, seed: int):
        self.base, self.labelled, self.per_epoch, self.seed = base, int(labelled), int(per_epoch), int(seed)
        self.unlabelled = len(base) - self.labelled
        if self.unlabelled < 1 or self.labelled < 0 or self.per_epoch < 0:
            raise ValueError(f"unlabelled mix: {len(base)} samples, {labelled} labelled, {per_epoch} unlabelled per epoch")
        self.epoch = 0
        self._orders: dict[int, list[int]] = {}

    @property
    def samples(self) -> list[Sample]:
        return self.base.samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def _order(self, cycle: int) -> list[int]:
        from egodistill.data.dataset import EpochOrderSampler

        if cycle not in self._orders:
            if len(self._orders) > 1:  # an epoch spans at most two passes when per_epoch <= U
                self._orders.pop(min(self._orders))
            # another stream than the trainer's order of epochs (seed offset)
            self._orders[cycle] = EpochOrderSampler(self.unlabelled, self.seed + 0x5EED, cycle).order()
        return self._orders[cycle]

    def base_index(self, index: int) -> int:
        """Return the index into `base` of position `index` of the current epoch."""
        if not 0 <= index < len(self):
            raise IndexError(f"unlabelled mix: index {index} out of range 0..{len(self) - 1}")
        if index < self.labelled:
            return index
        cycle, pos = divmod(self.epoch * self.per_epoch + index - self.labelled, self.unlabelled)
        return self.labelled + self._order(cycle)[pos]

    def __len__(self) -> int:
        return self.labelled + self.per_epoch

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.base[self.base_index(index)]

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        mapped = [self.base_index(i) for i in indices]
        if hasattr(self.base, "__getitems__"):
            return self.base.__getitems__(mapped)
        return [self.base[i] for i in mapped]


def mix(base, labelled: int, ratio: float, seed: int):
    """Return the training set over `base` (labelled samples first, then unlabelled ones): `base`
    itself when every sample is used every epoch (`ratio` 0 or no unlabelled sample), else an
    `UnlabelledMix` with `round(ratio * labelled)` unlabelled samples per epoch."""
    if ratio <= 0 or len(base) == labelled:
        return base
    return UnlabelledMix(base, labelled, max(1, round(ratio * labelled)), seed)
