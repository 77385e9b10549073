"""The record types that flow from annotation readers to datasets and metrics."""
from __future__ import annotations

from dataclasses import dataclass, field

# `stop_frame` of a sample that spans its whole video (Something-Something): the dataset
# resolves it with the store, taking frames first_frame .. first_frame + num_frames - 1.
WHOLE_VIDEO = -1


@dataclass(frozen=True)
class Sample:
    """One annotated action segment (or a whole clip for Something-Something).

    Frame numbers are in the store's numbering (EPIC: 1-based, as `frame_0000000001.jpg`);
    `start_frame` and `stop_frame` are both inclusive. `labels` maps a head name ("verb",
    "noun", "action") to its class id; it is empty for unlabelled (test) samples.

    `stop_frame == WHOLE_VIDEO` (-1) means the sample is its whole video, whose length is only
    known from the store (SSv2 / Something-Else: `start_frame` is then 1 by convention and the
    dataset uses the store's first_frame and num_frames instead; see `whole_video`).
    `all_noun_classes` is EPIC's list of every noun class in the narration (empty elsewhere).
    """

    id: str
    video_id: str
    start_frame: int
    stop_frame: int
    labels: dict[str, int] = field(default_factory=dict)
    participant: str | None = None
    start_time: float | None = None  # seconds
    stop_time: float | None = None  # seconds
    narration: str | None = None
    all_noun_classes: tuple[int, ...] = ()

    @property
    def whole_video(self) -> bool:
        """True when the sample spans its whole video (stop_frame is WHOLE_VIDEO)."""
        return self.stop_frame == WHOLE_VIDEO

    @property
    def num_frames(self) -> int:
        """Return the number of frames (inclusive range); a whole-video sample must be resolved first."""
        if self.whole_video:
            raise ValueError(f"sample {self.id}: spans the whole video; its frame count comes from the store")
        return self.stop_frame - self.start_frame + 1


@dataclass
class DatasetInfo:
    """What metrics and prediction need to know about a dataset's classes.

    `heads` maps head name -> list of class names (index = class id). `tail_classes` maps head
    name -> set of tail class ids (EPIC's tail verbs / nouns). `unseen_participants` lists the
    participants absent from training (EPIC). `action_heads` names the (verb, noun) pair whose
    joint correctness is the EPIC "action" metric, or None when the dataset has an `action` head.
    """

    name: str
    heads: dict[str, list[str]]
    tail_classes: dict[str, set[int]] = field(default_factory=dict)
    unseen_participants: set[str] = field(default_factory=set)
    action_heads: tuple[str, str] | None = None

    @property
    def num_classes(self) -> dict[str, int]:
        return {h: len(names) for h, names in self.heads.items()}
