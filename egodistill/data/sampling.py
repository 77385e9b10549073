"""Which frames of a segment a clip reads: the `dense` and `uniform` samplers (METHOD.md §6).

Both return 0-based offsets into a segment of `n` frames, shape `[clips, num_frames]`. The
dataset adds the segment's first frame number to get store frame numbers.
"""
from __future__ import annotations

import numpy as np

SAMPLERS = ("dense", "uniform")


def _dense(n: int, num_frames: int, stride: int, clips: int, train: bool, rng: np.random.Generator | None) -> np.ndarray:
    span = num_frames * stride  # frames one clip covers, as in Video Swin's SampleFrames
    if train:
        # One random offset per clip; a segment shorter than the span starts at 0.
        starts = rng.integers(0, max(n - span, 0) + 1, size=clips)
    elif n <= span - 1:
        starts = np.zeros(clips, dtype=np.int64)
    else:
        a = (n - span + 1) / clips
        starts = np.array([int(k * a + a / 2) for k in range(clips)], dtype=np.int64)
    idx = starts[:, None] + np.arange(num_frames, dtype=np.int64)[None, :] * stride  # [clips, L]
    # Past the end: repeat the clip's last in-range index (the start itself is always in range).
    last = starts + ((n - 1 - starts) // stride) * stride  # [clips]
    return np.minimum(idx, last[:, None])


def _uniform(n: int, num_frames: int, clips: int, train: bool, rng: np.random.Generator | None) -> np.ndarray:
    segments = num_frames * clips
    g = (n - 1) / segments
    bounds = np.round(g * np.arange(segments + 1)).astype(np.int64)  # numpy rounds half to even
    lo, hi = bounds[:-1], bounds[1:]
    if train:
        idx = rng.integers(lo, hi + 1)  # both ends included
    else:
        idx = (lo + hi) // 2
    return idx.reshape(clips, num_frames)


def sample_frame_indices(
    n: int,
    num_frames: int,
    *,
    sampler: str = "dense",
    stride: int = 2,
    clips: int = 1,
    train: bool,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Return the frame offsets of `clips` clips of `num_frames` frames from a segment of `n` frames.

    Returns an int64 array `[clips, num_frames]` with values in `[0, n)`. `dense`: frames `stride`
    apart from one start per clip (training: random start; testing: starts spread evenly and
    centred; past the end the clip's last in-range frame repeats). `uniform`: `num_frames*clips`
    equal segments, training takes a random frame in each, testing the middle; clip k is the
    k-th run of `num_frames`. Training needs `rng`; testing is deterministic and ignores it.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}: expected one of {', '.join(SAMPLERS)}")
    if n < 1:
        raise ValueError(f"cannot sample frames from a segment of {n} frames: expected at least 1")
    if num_frames < 1 or clips < 1 or stride < 1:
        raise ValueError(
            f"num_frames, clips and stride must be >= 1, got num_frames={num_frames}, clips={clips}, stride={stride}"
        )
    if train and rng is None:
        raise ValueError("training-time sampling is random: pass rng=np.random.Generator")
    if sampler == "dense":
        return _dense(n, num_frames, stride, clips, train, rng)
    return _uniform(n, num_frames, clips, train, rng)
