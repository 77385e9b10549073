"""Training data for distillation: consistent or independent views, and cached-view replay.

* Consistent teaching (METHOD.md §5) needs nothing special: a `MultimodalDataset` over the
  union of the teachers' and the student's modalities draws one view per sample and applies it
  to every modality; a student with fewer frames takes `x[:, ::frame_step]` of the same view
  in `model_input`.
* `IndependentViewsDataset` (the `distill.consistent=false` ablation) draws a second view for
  the teachers. The student's modality keeps its usual key; the teachers' inputs go under
  `"teacher:<modality>"` and their view arrays under `"teacher_views"`. `teacher_batch(batch)`
  returns the batch as the teachers should see it.
* `CachedViewsDataset` replays, for sample i in epoch e, cached view `replay_choice(seed, e, i,
  K)`: only the student's modality is loaded, and the cached ensemble logits are attached as
  `item["teacher_logits"] = {head: [C] float32}` (a batch: `{head: [B, C]}`).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from egodistill.config import Config
from egodistill.data.dataset import MultimodalDataset
from egodistill.data.records import Sample
from egodistill.data.views import ViewParams
from egodistill.distill.cache import TeacherCache, replay_choice

TEACHER_PREFIX = "teacher:"


def teacher_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """Return `batch` with each `"teacher:<m>"` entry in place of `<m>` (unchanged when the
    teachers share the student's view)."""
    if not any(isinstance(k, str) and k.startswith(TEACHER_PREFIX) for k in batch):
        return batch
    out = {k: v for k, v in batch.items() if not (isinstance(k, str) and k.startswith(TEACHER_PREFIX))}
    for k, v in batch.items():
        if isinstance(k, str) and k.startswith(TEACHER_PREFIX):
            out[k[len(TEACHER_PREFIX):]] = v
    if "teacher_views" in batch:
        out["views"] = batch["teacher_views"]
    return out


class IndependentViewsDataset(MultimodalDataset):
    """Training items where the student and the teachers see independently drawn views.

    `modalities` are the teachers'; `student_modality` is loaded with its own view (even when a
    teacher reads the same modality). At test time (train=False) every model sees the same
    test views, so items are those of a plain dataset over the union of modalities.
    """

    def __init__(self, cfg: Config, samples: list[Sample], teacher_modalities: list[str], student_modality: str, train: bool):
        union = list(dict.fromkeys([student_modality, *teacher_modalities]))
        super().__init__(cfg, samples, union, train)
        self.teacher_modalities = list(teacher_modalities)
        self.student_modality = student_modality

    def get(self, index: int, out: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
        if not self.train:
            return super().get(index, out)
        out = out or {}
        rng = self.rng(index)
        student_view = self.draw_view(index, rng)
        teacher_view = self.draw_view(index, rng)  # the next draw of the same generator: independent
        s = self.student_modality
        item = self.load(index, [student_view], {s: out[s]} if s in out else None, modalities=[s])
        teacher_out = {m: out[TEACHER_PREFIX + m] for m in self.teacher_modalities if TEACHER_PREFIX + m in out}
        teacher = self.load(index, [teacher_view], teacher_out, modalities=self.teacher_modalities)
        for m in self.teacher_modalities:
            item[TEACHER_PREFIX + m] = teacher[m]
        item["teacher_views"] = teacher["views"]
        return item


class CachedViewsDataset(MultimodalDataset):
    """Training items replayed from a teacher-logit cache: the student's modality only, seen
    through a cached view, with the ensemble's cached logits attached."""

    def __init__(self, cfg: Config, samples: list[Sample], student_modality: str, cache: TeacherCache):
        super().__init__(cfg, samples, [student_modality], train=True)
        ids = [s.id for s in samples]
        if cache.ids != ids:
            first = next((i for i, (a, b) in enumerate(zip(cache.ids, ids)) if a != b), min(len(ids), len(cache.ids)))
            raise ValueError(
                f"teacher cache {cache.path}: its samples differ from the training samples "
                f"({len(cache.ids)} cached, {len(ids)} now; first difference at position {first}); rebuild it")
        self.cache = cache

    def choice(self, index: int) -> int:
        """Return the cached view that sample `index` replays in the current epoch."""
        return replay_choice(int(self.cfg.train.seed), self.epoch, index, self.cache.views)

    def get(self, index: int, out: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
        k = self.choice(index)
        view = ViewParams.from_array(self.cache.view(index, k))
        item = self.load(index, [view], out)
        item["teacher_logits"] = {h: torch.from_numpy(np.asarray(v, dtype=np.float32)) for h, v in self.cache.logits(index, k).items()}
        return item


class CacheBuildDataset(torch.utils.data.Dataset):
    """Rows `r = index * K + k` of a cache to build: view k of sample `index`, drawn from a
    generator seeded with (seed, index, k), loaded for the teachers' modalities."""

    def __init__(self, base: MultimodalDataset, views: int, seed: int):
        if not base.train:
            raise ValueError("a teacher cache is built from training views (train=True dataset)")
        self.base, self.views, self.seed = base, int(views), int(seed)

    def __len__(self) -> int:
        return len(self.base) * self.views

    def view(self, row: int) -> ViewParams:
        """Return the view cached at `row` (deterministic in seed, sample, k)."""
        index, k = divmod(row, self.views)
        rng = np.random.default_rng([self.seed, 0xCAC4E, index, k])
        return self.base.draw_view(index, rng)

    def __getitem__(self, row: int) -> dict[str, Any]:
        return self.base.load(row // self.views, [self.view(row)])


@torch.no_grad()
def build_cache(
    path,
    base: MultimodalDataset,
    ensemble,
    views: int,
    fingerprint: dict[str, Any],
    heads: dict[str, int],
    *,
    seed: int,
    batch_size: int,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> TeacherCache:
    """Precompute `views` training views of every sample of `base` (teachers' modalities) and
    the ensemble's logits on them; write the cache to `path` (atomically) and return it opened.

    `ensemble(batch) -> {head: [B, C]}`; per-sample weighting reads `batch["labels"]`. Batches
    come from `build_loader` (the training loader's workers, `base.cfg.train.workers`, and
    pinned memory), in row order.
    """
    from tqdm import tqdm

    from egodistill.data.dataset import build_loader
    from egodistill.distill.cache import CacheWriter
    from egodistill.engine.inputs import to_device

    rows = CacheBuildDataset(base, views, seed)
    loader = build_loader(rows, base.cfg, train=False, batch_size=batch_size, shuffle=False)
    view_dim = rows.view(0).to_array().shape[0]
    with CacheWriter(path, fingerprint, [s.id for s in base.samples], views, view_dim, heads) as writer:
        start = 0
        for batch in tqdm(loader, desc=f"teacher cache ({len(base)} samples x {views} views)", disable=not progress):
            logits = ensemble(to_device(batch, device))
            m = len(batch["id"])
            writer.write_rows(start, batch["views"][:, 0].numpy(), {h: logits[h].float().cpu().numpy() for h in heads})
            start += m
    return TeacherCache(path)
