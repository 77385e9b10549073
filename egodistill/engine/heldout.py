"""The held-out split carved from the training annotations, for honest model selection.

Whole videos are held out (segments of one video are near-duplicates, so a split by segment
would leak). The choice is a pure function of (video ids, fraction, seed): videos are ordered
by sha256("<seed>:<video_id>") and the first round(fraction * videos) are held out. The split is
recorded in the run folder (`heldout.json`) and the distillation reuses it for the dataset-level
teacher weights (samples no teacher trained on).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from egodistill.atomic import write_json
from egodistill.data.records import Sample

HELDOUT_FILE = "heldout.json"


def _video_key(seed: int, video_id: str) -> str:
    return hashlib.sha256(f"{seed}:{video_id}".encode()).hexdigest()


def heldout_videos(video_ids: list[str], fraction: float, seed: int) -> list[str]:
    """Return the held-out video ids (sorted): round(fraction * #videos) of them, at least one
    when fraction > 0, and always leaving at least one video for training."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"data.heldout_fraction must be in [0, 1), got {fraction}")
    videos = sorted(set(video_ids))
    if fraction == 0.0 or len(videos) < 2:
        return []
    count = min(max(1, round(fraction * len(videos))), len(videos) - 1)
    return sorted(sorted(videos, key=lambda v: _video_key(seed, v))[:count])


def split_heldout(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Return (train, heldout): the samples of the held-out videos go to `heldout`; file order
    is kept in both. Deterministic in (the samples' video ids, fraction, seed)."""
    held = set(heldout_videos([s.video_id for s in samples], fraction, seed))
    return [s for s in samples if s.video_id not in held], [s for s in samples if s.video_id in held]


def write_heldout(run_dir: str | os.PathLike, heldout: list[Sample], *, fraction: float, seed: int) -> Path:
    """Write `run_dir/heldout.json` ({"ids", "videos", "fraction", "seed"}) atomically; returns its path."""
    path = Path(run_dir) / HELDOUT_FILE
    data = {"ids": [s.id for s in heldout], "videos": sorted({s.video_id for s in heldout}),
            "fraction": fraction, "seed": seed}
    return write_json(path, data)


def read_heldout_ids(run_dir: str | os.PathLike) -> list[str]:
    """Return the held-out sample ids recorded in `run_dir/heldout.json`."""
    path = Path(run_dir) / HELDOUT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the run has no held-out split record")
    from egodistill.engine.checkpoint import read_json

    data = read_json(path)
    ids = data.get("ids") if isinstance(data, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValueError(f"{path}: expected {{'ids': [sample ids, ...]}}")
    return ids


def split_by_ids(samples: list[Sample], heldout_ids: list[str], source: str = "heldout.json") -> tuple[list[Sample], list[Sample]]:
    """Return (train, heldout) for a recorded list of held-out ids; raises KeyError naming `source`
    when an id is not among `samples` (the annotations changed since the split was made)."""
    held = set(heldout_ids)
    missing = sorted(held - {s.id for s in samples})
    if missing:
        raise KeyError(f"{source}: {len(missing)} held-out sample ids are not in the training annotations, "
                       f"e.g. {missing[:3]}; the annotation files changed since the run started")
    return [s for s in samples if s.id not in held], [s for s in samples if s.id in held]
