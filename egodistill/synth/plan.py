"""The plan: videos, participants, splits, segments and labels (everything the CSVs say)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from egodistill.synth.config import SynthConfig


@dataclass
class SegmentPlan:
    narration_id: str
    start_frame: int  # 1-based, inclusive
    stop_frame: int  # inclusive
    verb: int  # the motion actually shown
    noun: int
    label_verb: int  # the verb written in the CSV (differs from `verb` only with label noise)


@dataclass
class VideoPlan:
    video_id: str
    participant: str
    index: int  # participant index (0-based): selects the kitchen
    video_index: int  # global index: seeds the renderer
    split: str  # "train" | "validation" | "unlabelled"
    num_frames: int
    segments: list[SegmentPlan] = field(default_factory=list)


def _class_probs(n: int, imbalance: float) -> np.ndarray:
    p = (np.arange(n) + 1.0) ** -imbalance
    return p / p.sum()


def plan_dataset(cfg: SynthConfig) -> list[VideoPlan]:
    """Return the videos of the dataset, with splits, segment frame ranges and labels.

    Participant P{k} (the last) is unseen: all its videos are in validation. Of the other
    participants' videos, about `val_fraction` (at least one) go to validation, the rest to
    train. Then `num_unlabelled` more videos of the seen participants (split "unlabelled",
    planned from their own generator, so the labelled videos do not depend on them; their
    segments' verbs and nouns are rendered but never written). Deterministic in `cfg.seed`.
    """
    cfg.validate()
    rng = np.random.default_rng([cfg.seed, 1])
    k = cfg.num_participants
    unseen_videos = max(1, round(cfg.num_videos / k))
    seen_videos = cfg.num_videos - unseen_videos
    # Participants of the seen videos: round robin, so each seen participant has videos.
    owners = [i % (k - 1) for i in range(seen_videos)] + [k - 1] * unseen_videos
    n_val = min(seen_videos - 1, max(1, round(seen_videos * cfg.val_fraction)))
    val_set = set(rng.choice(seen_videos, size=n_val, replace=False).tolist())
    counters = [0] * k
    videos = []
    for v, owner in enumerate(owners):
        split = "validation" if owner == k - 1 or v in val_set else "train"
        videos.append(_plan_video(cfg, rng, owner, v, split, counters))
    unlabelled_rng = np.random.default_rng([cfg.seed, 2])
    for j in range(cfg.num_unlabelled):
        videos.append(_plan_video(cfg, unlabelled_rng, j % (k - 1), cfg.num_videos + j, "unlabelled", counters))
    return videos


def _plan_video(cfg: SynthConfig, rng: np.random.Generator, owner: int, index: int, split: str,
                counters: list[int]) -> VideoPlan:
    """Return the plan of video `index` of participant `owner` (counts its videos in `counters`)."""
    verb_p = _class_probs(cfg.num_verbs, cfg.class_imbalance)
    noun_p = _class_probs(cfg.num_nouns, cfg.class_imbalance)
    counters[owner] += 1
    pid = f"P{owner + 1:02d}"
    vid = f"{pid}_{counters[owner]:02d}"
    frame = 1 + int(rng.integers(cfg.gap_frames[0], cfg.gap_frames[1] + 1))
    segments = []
    for i in range(cfg.segments_per_video):
        lo = max(4, round(cfg.frames_per_segment * (1 - cfg.segment_jitter)))
        hi = max(lo, round(cfg.frames_per_segment * (1 + cfg.segment_jitter)))
        length = int(rng.integers(lo, hi + 1))
        verb = int(rng.choice(cfg.num_verbs, p=verb_p))
        noun = int(rng.choice(cfg.num_nouns, p=noun_p))
        label_verb = verb
        if split == "train" and rng.random() < cfg.label_noise:
            label_verb = int((verb + rng.integers(1, cfg.num_verbs)) % cfg.num_verbs)
        segments.append(SegmentPlan(f"{vid}_{i}", frame, frame + length - 1, verb, noun, label_verb))
        frame += length + int(rng.integers(cfg.gap_frames[0], cfg.gap_frames[1] + 1))
    return VideoPlan(vid, pid, owner, index, split, frame - 1, segments)
