"""A seeded synthetic egocentric dataset in the EPIC-KITCHENS-100 formats (`egodistill synth`).

Each video is a head-mounted camera over a participant's cluttered kitchen counter: the camera
drifts and shakes, a hand (with its forearm entering from the bottom edge) grasps one object
per action segment and moves it. The *verb* is the motion (lift, put-down, push, pull, rotate,
shake, open, close, wipe, cut, stir), the *noun* is the object's appearance (shape x material).
Modalities are complementary on purpose, as in real egocentric video (docs/synthetic.md):

* motion and sound tell the verb: each verb has its own trajectory (seen in optical flow and in
  the hand/object boxes) and its own sound (carrier frequency + temporal pattern);
* appearance tells the noun: shape and material colour/texture are plain in RGB; flow sees only
  the silhouette, layout only box size/aspect, audio only the material's resonance;
* RGB is noisy: ego-motion, shake, motion blur, defocus, lighting flicker, sensor noise, JPEG,
  background clutter and distractor objects; a single frame says little about the verb.

Everything is written through the `prepare` code, so the data travels the real pipeline:
JPEG frame folders -> `prepare_frames` -> rgb.h5; OpenCV flow from rgb.h5 -> flow.h5; one WAV
per video -> `prepare_audio` -> audio.h5; a hand-object detections JSON -> `prepare_layout`
-> layout.h5; EPIC-100 CSVs with the real 15-column header and class files.

    summary = generate(Path("synth"), SynthConfig(seed=0))

Frame f of a video (1-based, as EPIC's `frame_0000000001.jpg`) is at time (f - 1) / fps; the
audio sample of that time is at index round((f - 1) / fps * sample_rate).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
import wave
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass
class SynthConfig:
    """Every parameter of the generator; all difficulty knobs are here.

    Lengths in pixels are given as fractions of the frame's short side; amplitudes of sounds
    relative to full scale (1.0 = int16 maximum).
    """

    seed: int = 0
    # --- sizes and counts
    num_videos: int = 48
    num_participants: int = 6  # P01..Pk; the last one appears only in validation (unseen)
    # Extra videos of the seen participants whose segments are written without labels
    # (annotations/EPIC_100_unlabelled.csv, file key `unlabelled`), for distillation on unlabelled
    # clips. The labelled videos are the same whatever this number.
    num_unlabelled: int = 0
    val_fraction: float = 0.25  # of the seen participants' videos, for validation
    segments_per_video: int = 10
    frames_per_segment: int = 20  # mean; each segment's length varies by +-segment_jitter
    segment_jitter: float = 0.25
    gap_frames: tuple[int, int] = (4, 10)  # idle frames between segments (min, max)
    height: int = 64
    width: int = 64
    fps: float = 30.0
    num_verbs: int = 8  # the first num_verbs of VERB_POOL
    num_nouns: int = 12  # the first num_nouns of the shape x material grid (noun_parts)
    sample_rate: int = 16000
    class_imbalance: float = 0.6  # class frequency ~ (id + 1) ** -class_imbalance (long tail)
    label_noise: float = 0.0  # fraction of TRAINING segments whose verb label is another verb
    # --- RGB difficulty
    object_size: float = 0.34  # of the short side
    motion_amplitude: float = 0.30  # object displacement over a segment, of the short side
    camera_drift: float = 0.06  # slow ego-motion amplitude, of the short side
    camera_shake: float = 0.012  # per-frame jitter (std), of the short side
    motion_blur: float = 0.8  # blur length per pixel/frame of camera speed (0 = off)
    defocus: float = 0.7  # max Gaussian blur sigma in pixels, drawn per video
    noise_std: float = 8.0  # sensor noise std in 0..255 units
    light_variation: float = 0.2  # per-video brightness +- this fraction
    light_flicker: float = 0.06  # per-frame brightness flicker amplitude
    jpeg_quality: int = 80
    clutter: int = 10  # background blobs per kitchen
    distractors: int = 2  # static distractor objects on the counter (real nouns)
    # --- audio difficulty
    audio_noise: float = 0.06  # background noise rms
    audio_event_gain: float = 0.25  # peak amplitude of an action's sound (x U(0.6, 1))
    audio_distractor_rate: float = 0.6  # other activity's sounds per second (action-like + beeps)
    pitch_jitter: float = 0.05  # relative carrier jitter per segment
    # --- detection noise (layout)
    box_jitter: float = 0.04  # std of box edge noise, of the box size
    det_miss: float = 0.05  # probability a box is missing in a frame
    # --- flow
    flow_stride: int = 2  # RGB frames per flow frame (EPIC: 2)

    def validate(self) -> None:
        """Raise ValueError naming the parameter that is out of range."""
        checks = [
            ("num_videos", self.num_videos >= 2, ">= 2"),
            ("num_participants", 2 <= self.num_participants <= 99, "2..99"),
            ("num_videos", self.num_videos >= self.num_participants, f">= num_participants ({self.num_participants})"),
            ("num_unlabelled", self.num_unlabelled >= 0, ">= 0"),
            ("segments_per_video", self.segments_per_video >= 1, ">= 1"),
            ("frames_per_segment", self.frames_per_segment >= 4, ">= 4"),
            ("segment_jitter", 0 <= self.segment_jitter < 1, "in [0, 1)"),
            ("gap_frames", 1 <= self.gap_frames[0] <= self.gap_frames[1], "(min, max) with 1 <= min <= max"),
            ("height", self.height >= 16, ">= 16"),
            ("width", self.width >= 16, ">= 16"),
            ("fps", self.fps > 0, "> 0"),
            ("num_verbs", 2 <= self.num_verbs <= len(VERB_POOL), f"2..{len(VERB_POOL)}"),
            ("num_nouns", 2 <= self.num_nouns <= MAX_NOUNS, f"2..{MAX_NOUNS}"),
            ("sample_rate", self.sample_rate >= 8000, ">= 8000"),
            ("val_fraction", 0 < self.val_fraction < 1, "in (0, 1)"),
            ("label_noise", 0 <= self.label_noise < 1, "in [0, 1)"),
            ("jpeg_quality", 1 <= self.jpeg_quality <= 100, "1..100"),
            ("det_miss", 0 <= self.det_miss < 1, "in [0, 1)"),
            ("flow_stride", self.flow_stride >= 1, ">= 1"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"synth: parameter '{name}' = {getattr(self, name)!r}, expected {expected}")
        seen = self.num_videos - max(1, round(self.num_videos / self.num_participants))
        if seen < 2:
            raise ValueError(f"synth: num_videos={self.num_videos} leaves fewer than 2 videos of seen participants")

    @classmethod
    def tiny(cls, seed: int = 0) -> SynthConfig:
        """Return the settings for tests: 5 short videos of 32x32, builds in a couple of seconds."""
        return cls(
            seed=seed, num_videos=5, num_participants=3, segments_per_video=3, frames_per_segment=12,
            gap_frames=(2, 4), height=32, width=32, sample_rate=8000, num_verbs=4, num_nouns=4,
            clutter=4, distractors=1, class_imbalance=0.0,
        )


# --------------------------------------------------------------------------------------------
# The plan: videos, participants, splits, segments and labels (everything the CSVs say)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Rendering: sprites, kitchens, trajectories
# --------------------------------------------------------------------------------------------

_SPRITE = 32  # sprite canvas side; the object spans about 24 px of it before scaling
_SS = 4  # supersampling for anti-aliased masks


def _shape_mask(shape: int) -> np.ndarray:
    """Return the float32 [32, 32] coverage mask (0..1) of a shape, centred."""
    n = _SPRITE * _SS
    m = np.zeros((n, n), np.uint8)
    c = n // 2
    s = _SS
    name = SHAPES[shape][0]
    if name == "plate":
        cv2.circle(m, (c, c), 11 * s, 255, -1)
    elif name == "box":
        cv2.rectangle(m, (c - 9 * s, c - 9 * s), (c + 9 * s, c + 9 * s), 255, -1)
    elif name == "knife":
        cv2.rectangle(m, (c - 12 * s, c - 2 * s), (c + 4 * s, c + 2 * s), 255, -1)
        cv2.rectangle(m, (c + 4 * s, c - 3 * s), (c + 12 * s, c + 3 * s), 255, -1)
    elif name == "bottle":
        cv2.rectangle(m, (c - 5 * s, c - 6 * s), (c + 5 * s, c + 12 * s), 255, -1)
        cv2.rectangle(m, (c - 2 * s, c - 12 * s), (c + 2 * s, c - 6 * s), 255, -1)
    elif name == "bowl":
        cv2.ellipse(m, (c, c - 4 * s), (12 * s, 12 * s), 0, 0, 180, 255, -1)
    elif name == "pan":
        cv2.circle(m, (c - 4 * s, c), 8 * s, 255, -1)
        cv2.rectangle(m, (c + 3 * s, c - 2 * s), (c + 12 * s, c + 2 * s), 255, -1)
    return cv2.resize(m, (_SPRITE, _SPRITE), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _object_sprite(noun: int, rng: np.random.Generator) -> np.ndarray:
    """Return the RGBA float32 sprite [32, 32, 4] of one instance of noun class `noun`.

    Colour is the material's colour with a small per-instance jitter (intra-class variation);
    texture follows the material (metal shine, wood grain, plain plastic, see-through glass).
    """
    shape, material = noun_parts(noun)
    _, base, texture, _ = MATERIALS[material]
    alpha = _shape_mask(shape)
    colour = np.clip(np.array(base, np.float32) * rng.uniform(0.88, 1.12, 3), 0, 255)
    yy, xx = np.mgrid[0:_SPRITE, 0:_SPRITE].astype(np.float32) / _SPRITE
    if texture == "shine":  # a diagonal specular band
        shade = 0.8 + 0.45 * np.exp(-(((xx + yy) - rng.uniform(0.7, 1.3)) ** 2) / 0.02)
    elif texture == "grain":  # wood stripes
        shade = 0.85 + 0.15 * np.sin(2 * np.pi * (yy * rng.uniform(5, 7) + 0.2 * np.sin(6 * xx)))
    elif texture == "clear":  # glass: lets the background through
        shade = np.ones_like(xx)
        alpha = alpha * 0.6
    else:
        shade = np.ones_like(xx)
    rgb = np.clip(colour[None, None, :] * shade[..., None], 0, 255)
    # Dark outline: objects have edges even on a similar background.
    edge = np.clip(alpha - cv2.erode(alpha, np.ones((3, 3), np.uint8)), 0, 1)
    rgb = rgb * (1 - 0.5 * edge[..., None])
    return np.dstack([rgb, alpha]).astype(np.float32)


def _warp_sprite(
    frame: np.ndarray, sprite: np.ndarray, cx: float, cy: float, scale: float, angle: float, half: int = 0,
    gap: float = 0.0,
) -> None:
    """Alpha-blend `sprite` into `frame` (float32 [H, W, 3], in place), centred at (cx, cy).

    `half` = -1 / +1 draws only the left / right half, shifted outwards by `gap` pixels along the
    object's own x axis (open/close); 0 draws the whole sprite.
    """
    h, w = frame.shape[:2]
    src = sprite
    if half:
        src = sprite.copy()
        cols = slice(_SPRITE // 2, None) if half < 0 else slice(0, _SPRITE // 2)
        src[:, cols, 3] = 0
    a = math.radians(angle)
    ca, sa = math.cos(a) * scale, math.sin(a) * scale
    c0 = (_SPRITE - 1) / 2
    ox = half * gap * math.cos(a)
    oy = half * gap * math.sin(a)
    # Affine map sprite (x, y) -> frame: rotate+scale about the sprite centre, then translate.
    m = np.array([[ca, -sa, cx + ox - ca * c0 + sa * c0], [sa, ca, cy + oy - sa * c0 - ca * c0]], np.float32)
    out = cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    alpha = out[..., 3:4]
    frame *= 1 - alpha
    frame += out[..., :3] * alpha


def _sprite_box(sprite: np.ndarray, cx: float, cy: float, scale: float, angle: float, gap: float) -> tuple[float, ...]:
    """Return the pixel box (x1, y1, x2, y2) of the sprite's visible pixels after the warp."""
    ys, xs = np.nonzero(sprite[..., 3] > 0.3)
    c0 = (_SPRITE - 1) / 2
    px, py = xs - c0, ys - c0
    if gap:  # open/close: each half moves outwards along the object's x axis
        px = px + np.where(px < 0, -gap, gap) / max(scale, 1e-6)
    a = math.radians(angle)
    x = cx + scale * (math.cos(a) * px - math.sin(a) * py)
    y = cy + scale * (math.sin(a) * px + math.cos(a) * py)
    r = scale / 2
    return float(x.min() - r), float(y.min() - r), float(x.max() + r), float(y.max() + r)


@dataclass
class _Kitchen:
    """A participant's kitchen: counter colour/texture, clutter style, skin and sleeve, hum."""

    counter: np.ndarray  # [3]
    texture: str
    texture_scale: float
    clutter_palette: np.ndarray  # [4, 3]
    skin: np.ndarray  # [3]
    sleeve: np.ndarray  # [3]
    hum_hz: float


def _kitchen(seed: int, participant: int) -> _Kitchen:
    rng = np.random.default_rng([seed, 2, participant])
    return _Kitchen(
        counter=rng.uniform(60, 200, 3).astype(np.float32),
        texture=("tiles", "speckle", "grain", "marble")[participant % 4],
        texture_scale=float(rng.uniform(0.6, 1.6)),
        clutter_palette=rng.uniform(30, 230, (4, 3)).astype(np.float32),
        skin=np.array([rng.uniform(150, 235), rng.uniform(100, 175), rng.uniform(80, 140)], np.float32),
        sleeve=rng.uniform(20, 160, 3).astype(np.float32),
        hum_hz=float(rng.choice([50.0, 60.0]) * rng.uniform(0.98, 1.02)),
    )


def _ease(u: np.ndarray | float) -> Any:
    """Smoothstep 3u^2 - 2u^3 on [0, 1]: motions start and end at rest."""
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3 - 2 * u)


def _trajectory(kind: str, u: float, p: dict[str, float]) -> dict[str, float]:
    """Return the object's and hand's pose offsets at segment time u in [0, 1].

    Keys: dx, dy (object displacement, in units of the short side; centred so that the mean
    position does not give the verb away), scale (object size factor), angle (degrees), gap
    (open/close half separation, fraction of object size), hx, hy (hand offset relative to its
    grasp point, short-side units).
    """
    a = p["amp"]
    s = float(_ease(u))
    out = dict(dx=0.0, dy=0.0, scale=1.0, angle=0.0, gap=0.0, hx=0.0, hy=0.0)
    if kind == "lift":
        out["dy"] = -a * (s - 0.5)
    elif kind == "put-down":
        out["dy"] = a * (s - 0.5)
    elif kind == "push":  # away from the wearer: up and smaller
        out["dy"] = -0.45 * a * (s - 0.5)
        out["scale"] = 1.2 - 0.45 * s
    elif kind == "pull":  # towards the wearer: down and bigger
        out["dy"] = 0.45 * a * (s - 0.5)
        out["scale"] = 0.75 + 0.45 * s
    elif kind == "rotate":
        out["angle"] = p["dir"] * 160.0 * s
    elif kind == "shake":
        out["dx"] = 0.4 * a * math.sin(2 * math.pi * p["cycles"] * u) * math.sin(math.pi * u) ** 0.5
    elif kind == "open":
        out["gap"] = 0.45 * s
    elif kind == "close":
        out["gap"] = 0.45 * (1 - s)
    elif kind == "wipe":  # hand rubs back and forth over a still object
        out["hx"] = 0.35 * a * math.sin(2 * math.pi * p["cycles"] * u)
    elif kind == "cut":  # hand chops up and down
        out["hy"] = -0.35 * a * abs(math.sin(math.pi * p["cycles"] * u))
    elif kind == "stir":  # hand circles
        ph = 2 * math.pi * p["cycles"] * u * p["dir"]
        out["hx"] = 0.25 * a * math.cos(ph)
        out["hy"] = 0.25 * a * math.sin(ph)
    return out


def _background(cfg: SynthConfig, kitchen: _Kitchen, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Return the float32 [Hc, Wc, 3] world canvas: counter texture, clutter blobs, distractors."""
    hc, wc = size
    d = min(cfg.height, cfg.width)
    img = np.empty((hc, wc, 3), np.float32)
    img[:] = kitchen.counter * rng.uniform(0.92, 1.08, 3)
    yy, xx = np.mgrid[0:hc, 0:wc].astype(np.float32)
    k = kitchen.texture_scale * 12.0 / d
    if kitchen.texture == "tiles":
        lines = ((xx * k * 2) % 6 < 0.5) | ((yy * k * 2) % 6 < 0.5)
        img[lines] *= 0.7
    elif kitchen.texture == "speckle":
        img *= 1 + 0.18 * (rng.random((hc, wc, 1)) - 0.5)
    elif kitchen.texture == "grain":
        img *= (1 + 0.12 * np.sin(yy * k * 3 + 1.5 * np.sin(xx * k)))[..., None]
    else:  # marble
        img *= (1 + 0.1 * np.sin((xx + yy) * k + 3 * np.sin(yy * k * 0.7)))[..., None]
    # Clutter: crumbs, stains, utensils' shadows, in the kitchen's palette.
    for _ in range(cfg.clutter):
        colour = kitchen.clutter_palette[rng.integers(len(kitchen.clutter_palette))] * rng.uniform(0.8, 1.2)
        centre = (int(rng.integers(0, wc)), int(rng.integers(0, hc)))
        axes = (int(rng.integers(1, max(2, d // 6))), int(rng.integers(1, max(2, d // 8))))
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour.tolist(), -1, cv2.LINE_AA)
    return img


def _draw_hand(frame: np.ndarray, kitchen: _Kitchen, hx: float, hy: float, side: int, d: int) -> tuple[float, ...]:
    """Draw a forearm from the bottom edge and a hand at (hx, hy); return the hand's pixel box."""
    h, w = frame.shape[:2]
    sgn = 1 if side == 1 else -1  # right hand: arm comes from the bottom right
    elbow = (hx + sgn * 0.35 * d, h + 0.3 * d)
    f = 1 << 4  # OpenCV fixed-point drawing with 4 fractional bits: sub-pixel positions

    def pt(x: float, y: float) -> tuple[int, int]:
        return int(round(x * f)), int(round(y * f))

    thick = max(2, int(0.13 * d))
    cv2.line(frame, pt(*elbow), pt(hx, hy), kitchen.sleeve.tolist(), thick, cv2.LINE_AA, 4)
    ax, ay = 0.11 * d, 0.08 * d
    cv2.ellipse(frame, pt(hx, hy), (int(ax * f), int(ay * f)), -sgn * 30.0, 0, 360, kitchen.skin.tolist(), -1, cv2.LINE_AA, 4)
    return hx - ax * 1.05, hy - ax * 1.05, hx + ax * 1.05, hy + ax * 1.05


def _segment_params(cfg: SynthConfig, seg: SegmentPlan, rng: np.random.Generator, d: int) -> dict[str, Any]:
    """Draw the per-segment rendering parameters (instance appearance, placement, motion)."""
    return dict(
        sprite=_object_sprite(seg.noun, rng),
        size=cfg.object_size * d / 24.0 * rng.uniform(0.85, 1.15),  # sprite px -> frame px
        x0=rng.uniform(0.35, 0.65) * cfg.width,
        y0=rng.uniform(0.4, 0.6) * cfg.height,
        angle0=rng.uniform(-25, 25),
        side=int(rng.random() < 0.7),  # 1 = right hand
        amp=cfg.motion_amplitude * rng.uniform(0.8, 1.2),
        dir=float(rng.choice([-1.0, 1.0])),
        cycles=float(rng.uniform(2.5, 3.5)),
        pitch=1 + cfg.pitch_jitter * rng.uniform(-1, 1),
        gain=cfg.audio_event_gain * rng.uniform(0.6, 1.0),
    )


def render_video(cfg: SynthConfig, plan: VideoPlan) -> tuple[np.ndarray, dict[str, Any], np.ndarray]:
    """Render one video: returns (frames uint8 [N, H, W, 3] RGB, detections, audio float32 [S]).

    `detections` is this video's entry of the hand-object JSON ({"num_frames", "frames":
    {frame number: {"hands", "objects"}}}, boxes normalised, objects by descending score) plus,
    under "_truth", the noise-free per-frame boxes of the hand and the acted-on object (pixels,
    [N, 4], NaN where absent) for tests. Deterministic in (cfg.seed, plan.video_index).
    """
    rng = np.random.default_rng([cfg.seed, 3, plan.video_index])
    kitchen = _kitchen(cfg.seed, plan.index)
    h, w, n = cfg.height, cfg.width, plan.num_frames
    d = min(h, w)
    margin = int(math.ceil((cfg.camera_drift * 1.5 + cfg.camera_shake * 4) * d)) + 2
    world = _background(cfg, kitchen, rng, (h + 2 * margin, w + 2 * margin))
    # Distractor objects lie still on the counter (they move only with the camera).
    distractors = []
    for _ in range(cfg.distractors):
        noun = int(rng.integers(cfg.num_nouns))
        sprite = _object_sprite(noun, rng)
        scale = cfg.object_size * d / 24.0 * rng.uniform(0.7, 1.1)
        wx, wy = rng.uniform(0.1, 0.9) * (w + 2 * margin), rng.uniform(0.1, 0.9) * (h + 2 * margin)
        ang = rng.uniform(0, 360)
        _warp_sprite(world, sprite, wx, wy, scale, ang)
        distractors.append(_sprite_box(sprite, wx, wy, scale, ang, 0.0))

    # Camera: slow drift (sum of sinusoids) + AR(1) shake, in pixels.
    t = np.arange(n) / cfg.fps
    cam = np.zeros((n, 2))
    for axis in range(2):
        for _ in range(3):
            f0, ph = rng.uniform(0.05, 0.5), rng.uniform(0, 2 * np.pi)
            cam[:, axis] += cfg.camera_drift * d / 2 * np.sin(2 * np.pi * f0 * t + ph)
        shake = np.zeros(n)
        eps = rng.normal(0, cfg.camera_shake * d, n)
        for i in range(n):
            shake[i] = 0.5 * (shake[i - 1] if i else 0.0) + eps[i]
        cam[:, axis] += shake
    cam = np.clip(cam, -margin + 1, margin - 1)
    speed = np.linalg.norm(np.diff(cam, axis=0, prepend=cam[:1]), axis=1)

    seg_params = [_segment_params(cfg, s, rng, d) for s in plan.segments]
    starts = np.array([s.start_frame for s in plan.segments])
    stops = np.array([s.stop_frame for s in plan.segments])
    gain_video = 1 + cfg.light_variation * rng.uniform(-1, 1)
    tint = 1 + 0.06 * rng.normal(size=3)
    flicker = np.convolve(rng.normal(0, 1, n + 4), np.ones(5) / 5 ** 0.5, mode="valid")[:n]
    sigma = rng.uniform(0, cfg.defocus)

    frames = np.empty((n, h, w, 3), np.uint8)
    det_frames: dict[str, Any] = {}
    truth_hand = np.full((n, 4), np.nan, np.float32)
    truth_obj = np.full((n, 4), np.nan, np.float32)
    for i in range(n):
        fnum = i + 1
        cx, cy = cam[i]
        # The camera window into the world canvas (sub-pixel).
        m = np.array([[1, 0, margin + cx], [0, 1, margin + cy]], np.float32)
        frame = cv2.warpAffine(world, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REFLECT)
        # The segment this frame belongs to: the nearest one (gaps: before/after an action).
        j = int(np.argmin(np.minimum(np.abs(starts - fnum), np.abs(stops - fnum))
                          - 1e6 * ((starts <= fnum) & (fnum <= stops))))
        seg, p = plan.segments[j], seg_params[j]
        spec = VERB_POOL[seg.verb]
        u = (fnum - seg.start_frame) / max(1, seg.stop_frame - seg.start_frame)
        active = 0.0 <= u <= 1.0
        pose = _trajectory(spec.key, float(np.clip(u, 0, 1)), p)
        # Object pose in frame pixels: world placement minus the camera offset.
        ox = p["x0"] + pose["dx"] * d - cx
        oy = p["y0"] + pose["dy"] * d - cy
        scale = p["size"] * pose["scale"]
        angle = p["angle0"] + pose["angle"]
        gap_px = pose["gap"] * 24 * scale
        if gap_px > 0:
            _warp_sprite(frame, p["sprite"], ox, oy, scale, angle, half=-1, gap=gap_px)
            _warp_sprite(frame, p["sprite"], ox, oy, scale, angle, half=1, gap=gap_px)
        else:
            _warp_sprite(frame, p["sprite"], ox, oy, scale, angle)
        obox = _sprite_box(p["sprite"], ox, oy, scale, angle, gap_px)
        # Hand: grasps the object's side (or works over it); away from it between actions.
        sgn = 1 if p["side"] == 1 else -1
        if spec.moves_object:
            gx, gy = ox + sgn * 0.55 * 24 * scale, oy + 0.12 * 24 * scale
        else:
            gx, gy = ox + pose["hx"] * d, oy - 0.1 * d + pose["hy"] * d
        if not active:
            # Reach in before the action and withdraw after it, over up to 6 frames.
            k = (seg.start_frame - fnum) if u < 0 else (fnum - seg.stop_frame)
            r = min(1.0, k / 6.0)
            rest = (w / 2 + sgn * 0.3 * w - cx, h * 0.95 - cy)
            gx, gy = gx + r * (rest[0] - gx), gy + r * (rest[1] - gy)
        hbox = _draw_hand(frame, kitchen, gx, gy, p["side"], d)
        # Camera and optics: motion blur along the camera motion, defocus, lighting, noise.
        if cfg.motion_blur > 0 and speed[i] > 0.5:
            length = int(min(7, round(speed[i] * cfg.motion_blur))) | 1
            if length > 1:
                kernel = np.zeros((length, length), np.float32)
                vx, vy = np.diff(cam, axis=0, prepend=cam[:1])[i]
                ang = math.atan2(vy, vx)
                c = length // 2
                cv2.line(kernel, (int(round(c - c * math.cos(ang))), int(round(c - c * math.sin(ang)))),
                         (int(round(c + c * math.cos(ang))), int(round(c + c * math.sin(ang)))), 1.0, 1)
                frame = cv2.filter2D(frame, -1, kernel / kernel.sum())
        if sigma > 0.3:
            frame = cv2.GaussianBlur(frame, (0, 0), sigma)
        frame *= (gain_video * (1 + cfg.light_flicker * flicker[i])) * tint
        frame += rng.normal(0, cfg.noise_std, frame.shape).astype(np.float32)
        frames[i] = np.clip(frame, 0, 255).astype(np.uint8)

        # Detections: noisy boxes, sometimes missed, as a hand-object detector gives them.
        truth_hand[i] = hbox
        truth_obj[i] = obox
        hands, objects = [], []
        state = (3 if spec.moves_object else 4) if active else 0
        hb = _detect(hbox, w, h, cfg, rng)
        if hb is not None:
            hands.append({"box": hb, "score": round(float(rng.uniform(0.85, 1.0)), 4),
                          "side": "right" if p["side"] == 1 else "left", "state": state})
        ob = _detect(obox, w, h, cfg, rng)
        if ob is not None:
            objects.append({"box": ob, "score": round(float(rng.uniform(0.7, 1.0)), 4)})
        for dx1, dy1, dx2, dy2 in distractors:
            wbox = (dx1 - margin - cx, dy1 - margin - cy, dx2 - margin - cx, dy2 - margin - cy)
            db = _detect(wbox, w, h, cfg, rng)
            if db is not None:
                objects.append({"box": db, "score": round(float(rng.uniform(0.3, 0.9)), 4)})
        objects.sort(key=lambda o: -o["score"])
        if hands or objects:
            det_frames[str(fnum)] = {"hands": hands, "objects": objects}

    audio = _render_audio(cfg, plan, seg_params, kitchen, rng)
    dets = {"num_frames": n, "frames": det_frames, "_truth": {"hand": truth_hand, "object": truth_obj}}
    return frames, dets, audio


def _detect(box: tuple[float, ...], w: int, h: int, cfg: SynthConfig, rng: np.random.Generator) -> list[float] | None:
    """Return a noisy normalised [x1, y1, x2, y2] of pixel `box`, or None (missed / off-frame)."""
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    x1, x2 = x1 + rng.normal(0, cfg.box_jitter) * bw, x2 + rng.normal(0, cfg.box_jitter) * bw
    y1, y2 = y1 + rng.normal(0, cfg.box_jitter) * bh, y2 + rng.normal(0, cfg.box_jitter) * bh
    if rng.random() < cfg.det_miss:
        return None
    x1, x2 = np.clip(sorted((x1 / w, x2 / w)), 0, 1)
    y1, y2 = np.clip(sorted((y1 / h, y2 / h)), 0, 1)
    if (x2 - x1) * w < 1 or (y2 - y1) * h < 1:  # off-frame or degenerate
        return None
    return [round(float(v), 4) for v in (x1, y1, x2, y2)]


# --------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------


def verb_frequencies(cfg: SynthConfig) -> np.ndarray:
    """Return the carrier frequency in Hz of each verb class [num_verbs] (geometric spacing).

    The carrier is where a verb's sound has its spectral peak; spacing is wide (>= 30 %)
    compared with the per-segment pitch jitter, so the peak identifies the verb.
    """
    lo, hi = 300.0, min(5000.0, 0.4 * cfg.sample_rate)
    return lo * (hi / lo) ** (np.arange(cfg.num_verbs) / max(1, cfg.num_verbs - 1))


def _band_noise(rng: np.random.Generator, n: int, sr: int, f: np.ndarray | float, width: float) -> np.ndarray:
    """Return unit-rms noise [n] band-limited to f*(1 +- width/2) (f may vary in time: its mean is used)."""
    fc = float(np.mean(f))
    spec = np.fft.rfft(rng.normal(size=n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    spec[np.abs(freqs - fc) > fc * width / 2] = 0
    x = np.fft.irfft(spec, n)
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-9)


def _ping(n: int, sr: int, at: float, f: float, decay: float) -> np.ndarray:
    """Return [n] samples with a decaying sine at f Hz starting at second `at` (decay in s)."""
    t = np.arange(n) / sr - at
    return np.where(t >= 0, np.sin(2 * np.pi * f * t) * np.exp(-np.maximum(t, 0) / decay), 0.0)


def _event_sound(kind: str, n: int, sr: int, f: float, mat_f: float, p: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """Return the unit-peak sound [n] of one action: pattern by verb, carrier f, material mode mat_f."""
    dur = n / sr
    t = np.arange(n) / sr
    u = t / dur
    env = np.sin(np.pi * np.clip(u, 0, 1)) ** 0.5
    mat = min(mat_f, 0.45 * sr)

    def impact(at: float, decay: float = 0.08) -> np.ndarray:
        return _ping(n, sr, at, f, decay) + 0.35 * _ping(n, sr, at, mat, decay * 0.6)

    if kind == "lift":  # rising whoosh-tone
        inst = f * (0.9 + 0.2 * u)
        x = np.sin(2 * np.pi * np.cumsum(inst) / sr) * env
    elif kind == "put-down":  # a knock when it lands
        x = impact(0.8 * dur, 0.1) + 0.15 * _band_noise(rng, n, sr, f, 0.3) * env
    elif kind == "push":  # scraping, fast roughness
        x = _band_noise(rng, n, sr, f, 0.25) * env * (0.7 + 0.3 * np.sin(2 * np.pi * 12 * t))
    elif kind == "pull":  # scraping, slow roughness
        x = _band_noise(rng, n, sr, f, 0.25) * env * (0.6 + 0.4 * np.sin(2 * np.pi * 5 * t))
    elif kind == "rotate":  # a ratchet: clicks at 10 Hz
        x = sum(impact(a, 0.015) for a in np.arange(0.02, dur, 0.1))
    elif kind == "shake":  # rattling bursts, two per cycle
        bursts = np.abs(np.sin(2 * np.pi * p["cycles"] * u)) ** 4
        x = _band_noise(rng, n, sr, f, 0.3) * bursts
    elif kind == "open":  # a pop, then a squeak
        squeak = np.sin(2 * np.pi * f * t + 0.5 * np.sin(2 * np.pi * 6 * t)) * ((u > 0.25) & (u < 0.85))
        x = impact(0.1 * dur, 0.03) + 0.7 * squeak
    elif kind == "close":  # a squeak, then a click
        squeak = np.sin(2 * np.pi * f * t + 0.5 * np.sin(2 * np.pi * 6 * t)) * ((u > 0.1) & (u < 0.7))
        x = 0.7 * squeak + impact(0.85 * dur, 0.03)
    elif kind == "wipe":  # swishes in time with the hand
        x = _band_noise(rng, n, sr, f, 0.4) * np.abs(np.sin(2 * np.pi * p["cycles"] * u))
    elif kind == "cut":  # chops at each downstroke
        x = sum(impact(a * dur, 0.04) for a in (np.arange(int(p["cycles"])) + 0.5) / p["cycles"])
    elif kind == "stir":  # clinks as the spoon goes round
        x = sum(impact(a * dur, 0.12) for a in np.arange(int(p["cycles"])) / p["cycles"] + 0.05)
    else:
        raise ValueError(f"synth: no sound for verb kind {kind!r}")
    x = np.asarray(x, np.float64)
    return x / (np.abs(x).max() + 1e-9)


def _render_audio(cfg: SynthConfig, plan: VideoPlan, seg_params: list[dict[str, Any]], kitchen: _Kitchen,
                  rng: np.random.Generator) -> np.ndarray:
    """Return the video's mono waveform float32 [round(num_frames / fps * sample_rate)] in [-1, 1]."""
    sr = cfg.sample_rate
    n = int(round(plan.num_frames / cfg.fps * sr))
    t = np.arange(n) / sr
    # Kitchen ambience: mains hum with harmonics + broadband noise.
    x = sum(0.02 / k * np.sin(2 * np.pi * kitchen.hum_hz * k * t) for k in (1, 2, 3))
    x = x + cfg.audio_noise * rng.normal(size=n)
    freqs = verb_frequencies(cfg)
    # Other activity in the kitchen: action-like sounds (any verb's) that belong to no segment,
    # quieter than the wearer's own, at random times; plus beeps at random pitches.
    for _ in range(rng.poisson(cfg.audio_distractor_rate * n / sr)):
        kind = int(rng.integers(cfg.num_verbs))
        length = min(n, int(rng.uniform(0.3, 0.8) * sr))
        at = int(rng.integers(0, n - length + 1))
        p = {"cycles": float(rng.uniform(2.5, 3.5))}
        ev = _event_sound(VERB_POOL[kind].key, length, sr, freqs[kind] * rng.uniform(0.95, 1.05),
                          MATERIALS[int(rng.integers(len(MATERIALS)))][3], p, rng)
        x[at:at + length] += cfg.audio_event_gain * rng.uniform(0.3, 0.8) * ev
        x += cfg.audio_event_gain * rng.uniform(0.1, 0.4) * _ping(n, sr, rng.uniform(0, n / sr), rng.uniform(200, 0.4 * sr), 0.05)
    for seg, p in zip(plan.segments, seg_params):
        a = int(round((seg.start_frame - 1) / cfg.fps * sr))
        b = min(n, int(round(seg.stop_frame / cfg.fps * sr)))
        mat_f = MATERIALS[noun_parts(seg.noun)[1]][3]
        ev = _event_sound(VERB_POOL[seg.verb].key, b - a, sr, freqs[seg.verb] * p["pitch"], mat_f, p, rng)
        x[a:b] += p["gain"] * ev
    return np.clip(x, -1, 1).astype(np.float32)


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write float waveform `audio` [S] in [-1, 1] as a 16-bit mono WAV (temp file, then rename)."""
    pcm = (np.clip(audio, -1, 1) * 32767).round().astype("<i2")
    tmp = path.with_name(path.name + ".tmp")
    with wave.open(str(tmp), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.tobytes())
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# Annotations
# --------------------------------------------------------------------------------------------


def _timestamp(seconds: float, decimals: int = 2) -> str:
    """Return EPIC's HH:MM:SS.ss (decimals=2) or HH:MM:SS.sss (3) for `seconds`."""
    scale = 10 ** decimals
    total = int(round(seconds * scale))
    h, rest = divmod(total, 3600 * scale)
    m, rest = divmod(rest, 60 * scale)
    s, frac = divmod(rest, scale)
    return f"{h:02d}:{m:02d}:{s:02d}.{frac:0{decimals}d}"


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)


def tail_classes(counts: np.ndarray, share: float = 0.2) -> list[int]:
    """Return EPIC-style tail classes: the rarest classes that together hold at most `share` of
    the instances (at least the single rarest class), sorted by id."""
    order = np.argsort(-counts, kind="stable")  # most frequent first
    total = counts.sum()
    head, covered = [], 0
    for c in order:
        if covered >= (1 - share) * total:
            break
        head.append(int(c))
        covered += counts[c]
    tail = sorted(set(range(len(counts))) - set(head))
    return tail or [int(order[-1])]


def write_annotations(out: Path, cfg: SynthConfig, videos: list[VideoPlan]) -> dict[str, Any]:
    """Write the EPIC-100 annotation files under `out/annotations`; return counts per split."""
    ann = out / "annotations"
    ann.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[list[Any]]] = {"train": [], "validation": [], "unlabelled": []}
    verb_counts = np.zeros(cfg.num_verbs, np.int64)
    noun_counts = np.zeros(cfg.num_nouns, np.int64)
    for v in videos:
        for s in v.segments:
            verb_key, nkey = VERB_POOL[s.label_verb].key, noun_key(s.noun)
            start_t = (s.start_frame - 1) / cfg.fps
            if v.split == "unlabelled":  # as EPIC's test timestamps: no narration, no labels
                rows["unlabelled"].append([s.narration_id, v.participant, v.video_id, _timestamp(start_t),
                                           _timestamp((s.stop_frame - 1) / cfg.fps), s.start_frame, s.stop_frame])
                continue
            rows[v.split].append([
                s.narration_id, v.participant, v.video_id, _timestamp(start_t + 0.1, 3), _timestamp(start_t),
                _timestamp((s.stop_frame - 1) / cfg.fps), s.start_frame, s.stop_frame, f"{verb_key} {nkey}",
                verb_key, s.label_verb, nkey, s.noun, f"['{nkey}']", f"[{s.noun}]",
            ])
            if v.split == "train":
                verb_counts[s.label_verb] += 1
                noun_counts[s.noun] += 1
    _write_csv(ann / "EPIC_100_train.csv", EPIC_HEADER, rows["train"])
    _write_csv(ann / "EPIC_100_validation.csv", EPIC_HEADER, rows["validation"])
    if cfg.num_unlabelled:
        _write_csv(ann / "EPIC_100_unlabelled.csv", EPIC_UNLABELLED_HEADER, rows["unlabelled"])
    cls_header = ["id", "key", "instances", "category"]
    _write_csv(ann / "EPIC_100_verb_classes.csv", cls_header, [
        [i, VERB_POOL[i].key, str(list(VERB_POOL[i].instances)), VERB_POOL[i].category] for i in range(cfg.num_verbs)
    ])
    noun_rows = []
    for i in range(cfg.num_nouns):
        s, m = noun_parts(i)
        noun_rows.append([i, noun_key(i), str([noun_key(i), f"{MATERIALS[m][0]}:{SHAPES[s][0]}"]), SHAPES[s][1]])
    _write_csv(ann / "EPIC_100_noun_classes.csv", cls_header, noun_rows)
    tail_v, tail_n = tail_classes(verb_counts), tail_classes(noun_counts)
    _write_csv(ann / "EPIC_100_tail_verbs.csv", ["verb"], [[c] for c in tail_v])
    _write_csv(ann / "EPIC_100_tail_nouns.csv", ["noun"], [[c] for c in tail_n])
    unseen = sorted({v.participant for v in videos if v.index == cfg.num_participants - 1})
    _write_csv(ann / "EPIC_100_unseen_participant_ids_validation.csv", ["participant_id"], [[p] for p in unseen])
    return {
        "train_segments": len(rows["train"]), "validation_segments": len(rows["validation"]),
        "train_videos": sum(v.split == "train" for v in videos),
        "validation_videos": sum(v.split == "validation" for v in videos),
        "unlabelled_segments": len(rows["unlabelled"]),
        "unlabelled_videos": sum(v.split == "unlabelled" for v in videos),
        "tail_verbs": tail_v, "tail_nouns": tail_n, "unseen_participants": unseen,
        "train_verb_counts": verb_counts.tolist(), "train_noun_counts": noun_counts.tolist(),
    }


ANNOTATION_FILES = {
    "train": "annotations/EPIC_100_train.csv",
    "validation": "annotations/EPIC_100_validation.csv",
    "verb_classes": "annotations/EPIC_100_verb_classes.csv",
    "noun_classes": "annotations/EPIC_100_noun_classes.csv",
    "tail_verbs": "annotations/EPIC_100_tail_verbs.csv",
    "tail_nouns": "annotations/EPIC_100_tail_nouns.csv",
    "unseen_participants": "annotations/EPIC_100_unseen_participant_ids_validation.csv",
}
#: written when SynthConfig.num_unlabelled > 0: segments without labels (EPIC test-timestamps columns)
UNLABELLED_FILE = "annotations/EPIC_100_unlabelled.csv"
STORE_FILES = {"rgb": "rgb.h5", "flow": "flow.h5", "audio": "audio.h5", "layout": "layout.h5"}


# --------------------------------------------------------------------------------------------
# Generate: render, then write through the prepare code
# --------------------------------------------------------------------------------------------


def _render_to_disk(job: tuple[SynthConfig, VideoPlan, Path, Path]) -> tuple[str, dict[str, Any]]:
    """Render one video into an EPIC frame folder and a WAV; return (video id, its detections)."""
    cfg, plan, frames_dir, wav_dir = job
    frames, dets, audio = render_video(cfg, plan)
    vdir = frames_dir / plan.video_id
    vdir.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality]
    for i, frame in enumerate(frames):
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]), params)  # OpenCV wants BGR
        if not ok:
            raise RuntimeError(f"synth: JPEG encoding failed for video {plan.video_id}, frame {i + 1}")
        (vdir / f"frame_{i + 1:010d}.jpg").write_bytes(buf.tobytes())
    write_wav(wav_dir / f"{plan.video_id}.wav", audio, cfg.sample_rate)
    dets.pop("_truth")
    return plan.video_id, dets


def data_config(root: Path, *, unlabelled: bool = False) -> dict[str, Any]:
    """Return the config fragment that points a run at a synthetic dataset in `root` (with the
    `unlabelled` split's file when the dataset has unlabelled videos)."""
    files = dict(ANNOTATION_FILES, **({"unlabelled": UNLABELLED_FILE} if unlabelled else {}))
    return {"data": {"reader": "epic100", "root": str(Path(root).resolve()), "files": files,
                     "stores": dict(STORE_FILES)}}


def generate(out: Path, cfg: SynthConfig, *, workers: int = 1, progress: bool = True, overwrite: bool = False) -> dict:
    """Build the synthetic dataset in folder `out`; return the summary also saved in synth.json.

    The dataset is built in `<out>.tmp` and renamed to `out` at the end, so `out` is either
    complete or absent. Raises FileExistsError if `out` exists (unless `overwrite`).
    Writes: annotations/*.csv (EPIC-100), rgb.h5, flow.h5, audio.h5, layout.h5, data.yaml
    (config fragment) and synth.json (parameters, seed, counts, timings).
    """
    from egodistill.data.prepare.flow import prepare_flow
    from egodistill.data.prepare.frames import prepare_frames
    from egodistill.data.prepare.layout import prepare_layout
    from egodistill.data.prepare.video import prepare_audio

    cfg.validate()
    out = Path(out).expanduser().resolve()
    if out.exists() and not overwrite:
        raise FileExistsError(f"synth: output folder {out} already exists (use --force to replace it)")
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():  # left over from an interrupted build
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    videos = plan_dataset(cfg)
    work = Path(tempfile.mkdtemp(prefix="_work", dir=tmp))
    frames_dir, wav_dir = work / "frames", work / "audio"
    frames_dir.mkdir()
    wav_dir.mkdir()
    jobs = [(cfg, v, frames_dir, wav_dir) for v in videos]
    bar = _progress(len(jobs), "render", progress)
    detections: dict[str, Any] = {}
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for vid, dets in pool.map(_render_to_disk, jobs):
                detections[vid] = dets
                bar.update(1)
    else:
        for job in jobs:
            vid, dets = _render_to_disk(job)
            detections[vid] = dets
            bar.update(1)
    bar.close()
    det_path = work / "hand_object.json"
    with open(det_path, "w") as f:
        json.dump(detections, f, separators=(",", ":"))
    counts = write_annotations(tmp, cfg, videos)
    timings["render_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    bars = {"workers": workers, "show_progress": progress}
    prepare_frames(frames_dir, tmp / STORE_FILES["rgb"], fps=cfg.fps, **bars)
    timings["rgb_s"] = time.perf_counter() - t
    t = time.perf_counter()
    prepare_flow(tmp / STORE_FILES["rgb"], tmp / STORE_FILES["flow"], stride=cfg.flow_stride, **bars)
    timings["flow_s"] = time.perf_counter() - t
    t = time.perf_counter()
    prepare_audio(sorted(wav_dir.glob("*.wav")), tmp / STORE_FILES["audio"], sample_rate=cfg.sample_rate, **bars)
    prepare_layout(det_path, tmp / STORE_FILES["layout"], format="hand_object", show_progress=progress)
    timings["audio_layout_s"] = time.perf_counter() - t
    shutil.rmtree(work)

    timings["total_s"] = time.perf_counter() - t0
    summary = {
        "seed": cfg.seed,
        "params": dataclasses.asdict(cfg),
        "videos": len(videos),
        "frames": sum(v.num_frames for v in videos),
        "segments": sum(len(v.segments) for v in videos),
        "verbs": [VERB_POOL[i].key for i in range(cfg.num_verbs)],
        "nouns": [noun_key(i) for i in range(cfg.num_nouns)],
        "verb_frequencies_hz": [round(float(f), 1) for f in verb_frequencies(cfg)],
        **counts,
        "seconds": {k: round(v, 2) for k, v in timings.items()},
    }
    for name, payload in (("synth.json", json.dumps(summary, indent=1)),
                          ("data.yaml", yaml.safe_dump(data_config(out, unlabelled=cfg.num_unlabelled > 0), sort_keys=False))):
        path = tmp / name
        path.with_name(name + ".tmp").write_text(payload)
        os.replace(path.with_name(name + ".tmp"), path)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return summary


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=f"synth {desc}", unit="video")
