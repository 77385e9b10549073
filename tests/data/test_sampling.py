"""Dense and uniform frame samplers: known answers from METHOD.md §6 and properties."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from egodistill.data.sampling import sample_frame_indices


def test_dense_short_segment_repeats_last_in_range_frame():
    idx = sample_frame_indices(16, 16, sampler="dense", stride=2, clips=1, train=False)
    assert idx.tolist() == [[0, 2, 4, 6, 8, 10, 12, 14] + [14] * 8]


def test_dense_test_clips_are_spread_and_centred():
    # n=100, L=4, s=2: span 8, a = (100-8+1)/3 = 31 -> starts int(15.5)=15, int(46.5)=46, int(77.5)=77
    idx = sample_frame_indices(100, 4, sampler="dense", stride=2, clips=3, train=False)
    assert idx.tolist() == [[15, 17, 19, 21], [46, 48, 50, 52], [77, 79, 81, 83]]


def test_dense_train_start_covers_every_valid_offset():
    rng = np.random.default_rng(0)
    starts = {int(sample_frame_indices(20, 4, stride=2, train=True, rng=rng)[0, 0]) for _ in range(400)}
    assert starts == set(range(0, 20 - 8 + 1))


def test_uniform_test_known_answer():
    # n=9, L=4, K=1: g = 2, bounds 0,2,4,6,8 -> middles 1,3,5,7
    idx = sample_frame_indices(9, 4, sampler="uniform", clips=1, train=False)
    assert idx.tolist() == [[1, 3, 5, 7]]
    # n=10, L=2, K=2: g = 9/4 = 2.25, bounds round(0, 2.25, 4.5, 6.75, 9) = 0, 2, 4, 7, 9 (half to even)
    idx = sample_frame_indices(10, 2, sampler="uniform", clips=2, train=False)
    assert idx.tolist() == [[1, 3], [5, 8]]


def test_uniform_train_draws_inside_each_segment_both_ends_included():
    rng = np.random.default_rng(1)
    seen = np.stack([sample_frame_indices(9, 4, sampler="uniform", train=True, rng=rng)[0] for _ in range(300)])
    for i, (lo, hi) in enumerate([(0, 2), (2, 4), (4, 6), (6, 8)]):
        assert set(seen[:, i].tolist()) == set(range(lo, hi + 1))


def test_training_needs_rng_and_bad_arguments_raise():
    with pytest.raises(ValueError, match="rng"):
        sample_frame_indices(10, 4, train=True)
    with pytest.raises(ValueError, match="at least 1"):
        sample_frame_indices(0, 4, train=False)
    with pytest.raises(ValueError, match="unknown sampler"):
        sample_frame_indices(10, 4, sampler="random", train=False)


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 400),
    num_frames=st.integers(1, 32),
    stride=st.integers(1, 4),
    clips=st.integers(1, 5),
    sampler=st.sampled_from(["dense", "uniform"]),
    train=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_properties(n, num_frames, stride, clips, sampler, train, seed):
    kw = dict(sampler=sampler, stride=stride, clips=clips, train=train)
    idx = sample_frame_indices(n, num_frames, rng=np.random.default_rng(seed), **kw)
    assert idx.shape == (clips, num_frames) and idx.dtype == np.int64
    assert idx.min() >= 0 and idx.max() < n
    # Within a clip frames never go backwards.
    assert (np.diff(idx, axis=1) >= 0).all()
    if sampler == "dense":
        steps = np.diff(idx, axis=1)
        assert np.isin(steps, [0, stride]).all()
    # Seeded at train time, deterministic at test time.
    again = sample_frame_indices(n, num_frames, rng=np.random.default_rng(seed), **kw)
    assert np.array_equal(idx, again)
    if not train:
        other = sample_frame_indices(n, num_frames, rng=np.random.default_rng(seed + 1), **kw)
        assert np.array_equal(idx, other)
    if sampler == "uniform" and n >= num_frames * clips and not train:
        # Every segment has at least one frame, so test-time frames are strictly increasing overall.
        assert (np.diff(idx.reshape(-1)) >= 0).all()
