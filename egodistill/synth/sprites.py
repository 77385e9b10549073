"""Object sprites: a noun's silhouette and material as an RGBA image, warped into a frame."""
from __future__ import annotations

import math

import cv2
import numpy as np

from egodistill.synth.vocab import MATERIALS, SHAPES, noun_parts

SPRITE = 32  # sprite canvas side; the object spans about 24 px of it before scaling
_SS = 4  # supersampling for anti-aliased masks


def _shape_mask(shape: int) -> np.ndarray:
    """Return the float32 [32, 32] coverage mask (0..1) of a shape, centred."""
    n = SPRITE * _SS
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
    return cv2.resize(m, (SPRITE, SPRITE), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def object_sprite(noun: int, rng: np.random.Generator) -> np.ndarray:
    """Return the RGBA float32 sprite [32, 32, 4] of one instance of noun class `noun`.

    Colour is the material's colour with a small per-instance jitter (intra-class variation);
    texture follows the material (metal shine, wood grain, plain plastic, see-through glass).
    """
    shape, material = noun_parts(noun)
    _, base, texture, _ = MATERIALS[material]
    alpha = _shape_mask(shape)
    colour = np.clip(np.array(base, np.float32) * rng.uniform(0.88, 1.12, 3), 0, 255)
    yy, xx = np.mgrid[0:SPRITE, 0:SPRITE].astype(np.float32) / SPRITE
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


def warp_sprite(
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
        cols = slice(SPRITE // 2, None) if half < 0 else slice(0, SPRITE // 2)
        src[:, cols, 3] = 0
    a = math.radians(angle)
    ca, sa = math.cos(a) * scale, math.sin(a) * scale
    c0 = (SPRITE - 1) / 2
    ox = half * gap * math.cos(a)
    oy = half * gap * math.sin(a)
    # Affine map sprite (x, y) -> frame: rotate+scale about the sprite centre, then translate.
    m = np.array([[ca, -sa, cx + ox - ca * c0 + sa * c0], [sa, ca, cy + oy - sa * c0 - ca * c0]], np.float32)
    out = cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    alpha = out[..., 3:4]
    frame *= 1 - alpha
    frame += out[..., :3] * alpha


def sprite_box(sprite: np.ndarray, cx: float, cy: float, scale: float, angle: float, gap: float) -> tuple[float, ...]:
    """Return the pixel box (x1, y1, x2, y2) of the sprite's visible pixels after the warp."""
    ys, xs = np.nonzero(sprite[..., 3] > 0.3)
    c0 = (SPRITE - 1) / 2
    px, py = xs - c0, ys - c0
    if gap:  # open/close: each half moves outwards along the object's x axis
        px = px + np.where(px < 0, -gap, gap) / max(scale, 1e-6)
    a = math.radians(angle)
    x = cx + scale * (math.cos(a) * px - math.sin(a) * py)
    y = cy + scale * (math.sin(a) * px + math.cos(a) * py)
    r = scale / 2
    return float(x.min() - r), float(y.min() - r), float(x.max() + r), float(y.max() + r)
