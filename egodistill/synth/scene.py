"""The scene: a participant's kitchen (counter, clutter, hand), the verbs' trajectories and the
per-segment parameters."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from egodistill.synth.config import SynthConfig
from egodistill.synth.plan import SegmentPlan
from egodistill.synth.sprites import object_sprite


@dataclass
class Kitchen:
    """A participant's kitchen: counter colour/texture, clutter style, skin and sleeve, hum."""

    counter: np.ndarray  # [3]
    texture: str
    texture_scale: float
    clutter_palette: np.ndarray  # [4, 3]
    skin: np.ndarray  # [3]
    sleeve: np.ndarray  # [3]
    hum_hz: float


def kitchen_of(seed: int, participant: int) -> Kitchen:
    rng = np.random.default_rng([seed, 2, participant])
    return Kitchen(
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


def trajectory(kind: str, u: float, p: dict[str, float]) -> dict[str, float]:
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


def background(cfg: SynthConfig, kitchen: Kitchen, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
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


def draw_hand(frame: np.ndarray, kitchen: Kitchen, hx: float, hy: float, side: int, d: int) -> tuple[float, ...]:
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


def segment_params(cfg: SynthConfig, seg: SegmentPlan, rng: np.random.Generator, d: int) -> dict[str, Any]:
    """Draw the per-segment rendering parameters (instance appearance, placement, motion)."""
    return dict(
        sprite=object_sprite(seg.noun, rng),
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
