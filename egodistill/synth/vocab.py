"""The vocabulary: EPIC-100's CSV columns, the verbs (motions) and the nouns (shape x material)."""
from __future__ import annotations

from dataclasses import dataclass

EPIC_HEADER = [
    "narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp",
    "stop_timestamp", "start_frame", "stop_frame", "narration", "verb", "verb_class", "noun",
    "noun_class", "all_nouns", "all_noun_classes",
]
# The columns of EPIC's test timestamps, which the unlabelled segments are written with.
EPIC_UNLABELLED_HEADER = [
    "narration_id", "participant_id", "video_id", "start_timestamp", "stop_timestamp", "start_frame", "stop_frame",
]


@dataclass(frozen=True)
class VerbSpec:
    """A verb class: its motion (`kind`), EPIC-style instances and category."""

    key: str
    instances: tuple[str, ...]
    category: str
    moves_object: bool  # False: the hand moves over a still object (wipe, cut, stir)


# Order = class id; the first `num_verbs` are used. Ids are roughly by frequency as in EPIC.
VERB_POOL: tuple[VerbSpec, ...] = (
    VerbSpec("lift", ("lift", "raise", "lift-up", "pick-up"), "retrieve", True),
    VerbSpec("put-down", ("put-down", "place", "set-down", "lay"), "leave", True),
    VerbSpec("push", ("push", "push-away", "slide-away"), "manipulate", True),
    VerbSpec("pull", ("pull", "pull-closer", "drag"), "manipulate", True),
    VerbSpec("rotate", ("rotate", "turn", "twist", "spin"), "manipulate", True),
    VerbSpec("shake", ("shake", "jiggle", "rattle"), "manipulate", True),
    VerbSpec("open", ("open", "open-up", "split"), "access", True),
    VerbSpec("close", ("close", "shut", "join"), "access", True),
    VerbSpec("wipe", ("wipe", "rub", "clean"), "clean", False),
    VerbSpec("cut", ("cut", "chop", "slice"), "divide", False),
    VerbSpec("stir", ("stir", "mix", "swirl"), "mix", False),
)

# Shapes: silhouettes (what flow and box aspect can see). (name, EPIC-like category)
SHAPES: tuple[tuple[str, str], ...] = (
    ("plate", "crockery"), ("box", "storage"), ("knife", "cutlery"),
    ("bottle", "containers"), ("bowl", "crockery"), ("pan", "cookware"),
)
# Materials: colour + texture (what RGB sees) and an impact resonance in Hz (what audio hears).
MATERIALS: tuple[tuple[str, tuple[int, int, int], str, float], ...] = (
    ("metal", (185, 188, 195), "shine", 3400.0),
    ("wood", (150, 98, 52), "grain", 220.0),
    ("plastic", (215, 45, 55), "solid", 1500.0),
    ("glass", (150, 215, 230), "clear", 4300.0),
)
MAX_NOUNS = len(SHAPES) * len(MATERIALS)


def noun_parts(noun: int) -> tuple[int, int]:
    """Return (shape index, material index) of noun class `noun`.

    The first nouns cycle through all shapes and interleave materials, so any small vocabulary
    still mixes silhouettes and materials: noun i -> shape i % 6, material (i + i // 6) % 4.
    """
    return noun % len(SHAPES), (noun + noun // len(SHAPES)) % len(MATERIALS)


def noun_key(noun: int) -> str:
    """Return the EPIC-style compound key of a noun class, e.g. 'plate:metal'."""
    s, m = noun_parts(noun)
    return f"{SHAPES[s][0]}:{MATERIALS[m][0]}"
