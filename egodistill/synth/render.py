"""Rendering one video: the camera's path over the kitchen, each frame's scene (object, hand),
the camera's optics, the hand-object detections, and the soundtrack.

Every random draw comes from one generator seeded by (seed, video), in a fixed order: the
counter and distractors, the camera path, the segments' parameters, the video's lighting, then
per frame the sensor noise and the detections, then the audio.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from egodistill.synth.audio import render_audio
from egodistill.synth.config import SynthConfig
from egodistill.synth.plan import VideoPlan
from egodistill.synth.scene import Kitchen, background, draw_hand, kitchen_of, segment_params, trajectory
from egodistill.synth.sprites import object_sprite, sprite_box, warp_sprite
from egodistill.synth.vocab import VERB_POOL


@dataclass
class _Shot:
    """What one frame shows before the optics: the pixels and the true boxes (pixels)."""

    frame: np.ndarray  # float32 [H, W, 3]
    hand_box: tuple[float, ...]
    object_box: tuple[float, ...]
    segment: int  # index of the segment the frame belongs to
    active: bool  # inside the segment (not reaching in / withdrawing)


@dataclass
class _Video:
    """A video's fixed parts: kitchen, world canvas, camera path, segments' parameters, lighting."""

    cfg: SynthConfig
    plan: VideoPlan
    kitchen: Kitchen
    d: int  # the frame's short side
    margin: int  # world canvas border around the camera window
    world: np.ndarray
    distractors: list[tuple[float, ...]]  # world-canvas boxes
    cam: np.ndarray  # [N, 2] camera offset in pixels
    vel: np.ndarray  # [N, 2] camera motion since the previous frame
    speed: np.ndarray  # [N] its length
    seg_params: list[dict[str, Any]]
    gain: float
    tint: np.ndarray
    flicker: np.ndarray
    sigma: float


def render_video(cfg: SynthConfig, plan: VideoPlan) -> tuple[np.ndarray, dict[str, Any], np.ndarray]:
    """Render one video: returns (frames uint8 [N, H, W, 3] RGB, detections, audio float32 [S]).

    `detections` is this video's entry of the hand-object JSON ({"num_frames", "frames":
    {frame number: {"hands", "objects"}}}, boxes normalised, objects by descending score) plus,
    under "_truth", the noise-free per-frame boxes of the hand and the acted-on object (pixels,
    [N, 4], NaN where absent) for tests. Deterministic in (cfg.seed, plan.video_index).
    """
    rng = np.random.default_rng([cfg.seed, 3, plan.video_index])
    video = _set_up(cfg, plan, rng)
    h, w, n = cfg.height, cfg.width, plan.num_frames
    frames = np.empty((n, h, w, 3), np.uint8)
    det_frames: dict[str, Any] = {}
    truth_hand = np.full((n, 4), np.nan, np.float32)
    truth_obj = np.full((n, 4), np.nan, np.float32)
    for i in range(n):
        shot = _draw_scene(video, i)
        frames[i] = _optics(video, shot.frame, i, rng)
        truth_hand[i], truth_obj[i] = shot.hand_box, shot.object_box
        entry = _detections(video, shot, i, rng)
        if entry is not None:
            det_frames[str(i + 1)] = entry
    audio = render_audio(cfg, plan, video.seg_params, video.kitchen, rng)
    dets = {"num_frames": n, "frames": det_frames, "_truth": {"hand": truth_hand, "object": truth_obj}}
    return frames, dets, audio


def _set_up(cfg: SynthConfig, plan: VideoPlan, rng: np.random.Generator) -> _Video:
    kitchen = kitchen_of(cfg.seed, plan.index)
    h, w = cfg.height, cfg.width
    d = min(h, w)
    margin = int(math.ceil((cfg.camera_drift * 1.5 + cfg.camera_shake * 4) * d)) + 2
    world = background(cfg, kitchen, rng, (h + 2 * margin, w + 2 * margin))
    distractors = _place_distractors(cfg, world, rng, d, margin)
    cam = _camera_path(cfg, rng, plan.num_frames, d, margin)
    vel = np.diff(cam, axis=0, prepend=cam[:1])
    speed = np.linalg.norm(vel, axis=1)
    seg_params = [segment_params(cfg, s, rng, d) for s in plan.segments]
    gain = 1 + cfg.light_variation * rng.uniform(-1, 1)
    tint = 1 + 0.06 * rng.normal(size=3)
    n = plan.num_frames
    flicker = np.convolve(rng.normal(0, 1, n + 4), np.ones(5) / 5 ** 0.5, mode="valid")[:n]
    sigma = rng.uniform(0, cfg.defocus)
    return _Video(cfg, plan, kitchen, d, margin, world, distractors, cam, vel, speed, seg_params, gain, tint, flicker,
                  sigma)


def _place_distractors(cfg: SynthConfig, world: np.ndarray, rng: np.random.Generator, d: int,
                       margin: int) -> list[tuple[float, ...]]:
    """Draw still distractor objects on the counter (they move only with the camera); returns
    their boxes on the world canvas."""
    h, w = cfg.height, cfg.width
    boxes = []
    for _ in range(cfg.distractors):
        noun = int(rng.integers(cfg.num_nouns))
        sprite = object_sprite(noun, rng)
        scale = cfg.object_size * d / 24.0 * rng.uniform(0.7, 1.1)
        wx, wy = rng.uniform(0.1, 0.9) * (w + 2 * margin), rng.uniform(0.1, 0.9) * (h + 2 * margin)
        ang = rng.uniform(0, 360)
        warp_sprite(world, sprite, wx, wy, scale, ang)
        boxes.append(sprite_box(sprite, wx, wy, scale, ang, 0.0))
    return boxes


def _camera_path(cfg: SynthConfig, rng: np.random.Generator, n: int, d: int, margin: int) -> np.ndarray:
    """Return the camera offset [N, 2] in pixels: slow drift (sum of sinusoids) + AR(1) shake."""
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
    return np.clip(cam, -margin + 1, margin - 1)


def _segment_of(plan: VideoPlan, fnum: int) -> int:
    """Return the index of the segment frame `fnum` belongs to: the nearest one (gaps: before /
    after an action)."""
    starts = np.array([s.start_frame for s in plan.segments])
    stops = np.array([s.stop_frame for s in plan.segments])
    return int(np.argmin(np.minimum(np.abs(starts - fnum), np.abs(stops - fnum))
                         - 1e6 * ((starts <= fnum) & (fnum <= stops))))


def _draw_scene(video: _Video, i: int) -> _Shot:
    """Frame i (0-based) through the camera window: the acted-on object in its pose and the hand."""
    cfg, d, (cx, cy) = video.cfg, video.d, video.cam[i]
    h, w, fnum = cfg.height, cfg.width, i + 1
    m = np.array([[1, 0, video.margin + cx], [0, 1, video.margin + cy]], np.float32)  # sub-pixel window
    frame = cv2.warpAffine(video.world, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REFLECT)
    j = _segment_of(video.plan, fnum)
    seg, p = video.plan.segments[j], video.seg_params[j]
    spec = VERB_POOL[seg.verb]
    u = (fnum - seg.start_frame) / max(1, seg.stop_frame - seg.start_frame)
    pose = trajectory(spec.key, float(np.clip(u, 0, 1)), p)
    # Object pose in frame pixels: world placement minus the camera offset.
    ox, oy = p["x0"] + pose["dx"] * d - cx, p["y0"] + pose["dy"] * d - cy
    scale = p["size"] * pose["scale"]
    angle = p["angle0"] + pose["angle"]
    gap_px = pose["gap"] * 24 * scale
    if gap_px > 0:
        warp_sprite(frame, p["sprite"], ox, oy, scale, angle, half=-1, gap=gap_px)
        warp_sprite(frame, p["sprite"], ox, oy, scale, angle, half=1, gap=gap_px)
    else:
        warp_sprite(frame, p["sprite"], ox, oy, scale, angle)
    obox = sprite_box(p["sprite"], ox, oy, scale, angle, gap_px)
    # Hand: grasps the object's side (or works over it); away from it between actions.
    sgn = 1 if p["side"] == 1 else -1
    if spec.moves_object:
        gx, gy = ox + sgn * 0.55 * 24 * scale, oy + 0.12 * 24 * scale
    else:
        gx, gy = ox + pose["hx"] * d, oy - 0.1 * d + pose["hy"] * d
    active = 0.0 <= u <= 1.0
    if not active:
        # Reach in before the action and withdraw after it, over up to 6 frames.
        k = (seg.start_frame - fnum) if u < 0 else (fnum - seg.stop_frame)
        r = min(1.0, k / 6.0)
        rest = (w / 2 + sgn * 0.3 * w - cx, h * 0.95 - cy)
        gx, gy = gx + r * (rest[0] - gx), gy + r * (rest[1] - gy)
    hbox = draw_hand(frame, video.kitchen, gx, gy, p["side"], d)
    return _Shot(frame, hbox, obox, j, active)


def _optics(video: _Video, frame: np.ndarray, i: int, rng: np.random.Generator) -> np.ndarray:
    """Return frame i as the camera records it (uint8): motion blur along the camera motion,
    defocus, lighting, sensor noise."""
    cfg = video.cfg
    speed = video.speed[i]
    if cfg.motion_blur > 0 and speed > 0.5:
        length = int(min(7, round(speed * cfg.motion_blur))) | 1
        if length > 1:
            kernel = np.zeros((length, length), np.float32)
            vx, vy = video.vel[i]
            ang = math.atan2(vy, vx)
            c = length // 2
            cv2.line(kernel, (int(round(c - c * math.cos(ang))), int(round(c - c * math.sin(ang)))),
                     (int(round(c + c * math.cos(ang))), int(round(c + c * math.sin(ang)))), 1.0, 1)
            frame = cv2.filter2D(frame, -1, kernel / kernel.sum())
    if video.sigma > 0.3:
        frame = cv2.GaussianBlur(frame, (0, 0), video.sigma)
    frame *= (video.gain * (1 + cfg.light_flicker * video.flicker[i])) * video.tint
    frame += rng.normal(0, cfg.noise_std, frame.shape).astype(np.float32)
    return np.clip(frame, 0, 255).astype(np.uint8)


def _detections(video: _Video, shot: _Shot, i: int, rng: np.random.Generator) -> dict[str, Any] | None:
    """Return frame i's hand-object detections (noisy boxes, sometimes missed, as a detector
    gives them), or None when nothing is detected."""
    cfg, margin, (cx, cy) = video.cfg, video.margin, video.cam[i]
    w, h = cfg.width, cfg.height
    p = video.seg_params[shot.segment]
    moves_object = VERB_POOL[video.plan.segments[shot.segment].verb].moves_object
    hands, objects = [], []
    state = (3 if moves_object else 4) if shot.active else 0
    hb = _detect(shot.hand_box, w, h, cfg, rng)
    if hb is not None:
        hands.append({"box": hb, "score": round(float(rng.uniform(0.85, 1.0)), 4),
                      "side": "right" if p["side"] == 1 else "left", "state": state})
    ob = _detect(shot.object_box, w, h, cfg, rng)
    if ob is not None:
        objects.append({"box": ob, "score": round(float(rng.uniform(0.7, 1.0)), 4)})
    for dx1, dy1, dx2, dy2 in video.distractors:
        wbox = (dx1 - margin - cx, dy1 - margin - cy, dx2 - margin - cx, dy2 - margin - cy)
        db = _detect(wbox, w, h, cfg, rng)
        if db is not None:
            objects.append({"box": db, "score": round(float(rng.uniform(0.3, 0.9)), 4)})
    objects.sort(key=lambda o: -o["score"])
    return {"hands": hands, "objects": objects} if hands or objects else None


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
