"""Views: round trips, train/test view geometry, crop/resize/flip known answers, box transforms,
colour jitter, and alignment of frames and boxes under random views."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from egodistill.config import DataConfig
from egodistill.data import views as V
from egodistill.data.views import ViewParams, color_jitter, crop_resize, draw_train_view, normalize_frames, transform_boxes


def _cfg(**kw) -> DataConfig:
    base = dict(num_frames=8, stride=2, size=32, test_clips=2, test_crops=3)
    base.update(kw)
    return DataConfig(**base)


def test_view_array_round_trip_is_exact():
    view = ViewParams(np.array([0, 2, 4, 1000003]), 1.2345678901, (0.1, 0.2, 0.7, 0.9), True, 2**31 - 2)
    a = view.to_array()
    assert a.dtype == np.float64 and a.shape == (7 + 4,)
    back = ViewParams.from_array(a)
    assert back == view and back.color_seed == 2**31 - 2 and back.frames.dtype == np.int64
    assert ViewParams.from_array(torch.from_numpy(a)) == view
    with pytest.raises(ValueError, match="vector"):
        ViewParams.from_array(np.zeros(3))


def test_subsample_takes_every_kth_frame_and_keeps_the_rest():
    view = ViewParams(np.arange(16) * 2, 1.3, (0.1, 0.0, 0.6, 1.0), True, 7)
    half = view.subsample(2)
    assert half.frames.tolist() == list(range(0, 32, 4))
    assert (half.scale, half.crop, half.flip, half.color_seed) == (1.3, (0.1, 0.0, 0.6, 1.0), True, 7)


@pytest.mark.parametrize("hw", [(256, 456), (480, 270), (64, 64)])
def test_train_views_are_square_pixel_crops_within_the_scale_range(hw):
    cfg = _cfg()
    h, w = hw
    rng = np.random.default_rng(0)
    flips = 0
    for _ in range(200):
        v = draw_train_view(40, cfg, rng, hw)
        x1, y1, x2, y2 = v.crop
        assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1
        px = np.array([x1 * w, y1 * h, x2 * w, y2 * h])
        np.testing.assert_allclose(px, np.round(px), atol=1e-9)  # whole source pixels
        side_w, side_h = round(px[2] - px[0]), round(px[3] - px[1])
        assert side_w == side_h
        assert 1.15 - 0.02 <= min(h, w) / side_w <= 1.43 + 0.02
        assert v.scale == pytest.approx(min(h, w) / side_w)
        assert v.frames.shape == (8,) and v.frames.max() < 40
        flips += v.flip
    assert 60 < flips < 140
    again = draw_train_view(40, cfg, np.random.default_rng(5), hw)
    assert again == draw_train_view(40, cfg, np.random.default_rng(5), hw)
    assert not any(draw_train_view(40, _cfg(hflip=False), rng, hw).flip for _ in range(30))


def test_test_views_clip_major_three_crops_along_long_side():
    cfg = _cfg()
    views = V.test_views(100, cfg, (256, 456))
    assert len(views) == 6
    assert all(v.frames.tolist() == views[0].frames.tolist() for v in views[:3])
    assert views[0].frames.tolist() != views[3].frames.tolist()
    assert [v.crop for v in views[:3]] == [
        (0.0, 0.0, 256 / 456, 1.0), (100 / 456, 0.0, 356 / 456, 1.0), (200 / 456, 0.0, 1.0, 1.0)]
    assert not any(v.flip for v in views) and all(v.scale == 1.0 for v in views)
    tall = V.test_views(100, _cfg(test_crops=1, test_clips=1), (456, 256))
    assert tall[0].crop == (0.0, 100 / 456, 1.0, 356 / 456)
    assert V.test_views(100, cfg, (256, 456)) == views
    with pytest.raises(ValueError, match="test_crops"):
        V.test_views(100, _cfg(test_crops=2), (256, 456))


def test_crop_resize_known_answers():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    # A crop that is exactly S x S source pixels is a slice.
    view = ViewParams(np.zeros(1, np.int64), 1.0, (5 / 30, 2 / 20, 21 / 30, 18 / 20), False, 0)
    out = crop_resize([img, img], view, 16)
    assert out.shape == (2, 16, 16, 3)
    assert np.array_equal(out[0], img[2:18, 5:21])
    flipped = crop_resize([img], ViewParams(view.frames, 1.0, view.crop, True, 0), 16)
    assert np.array_equal(flipped[0], img[2:18, 5:21][:, ::-1])
    grey = crop_resize([img[..., 0]], view, 16)
    assert grey.shape == (1, 16, 16) and np.array_equal(grey[0], img[2:18, 5:21, 0])
    # Frames one at a time (a decoding generator) into a given output: the same answer, in place.
    dst = np.zeros((3, 16, 16, 3), np.uint8)
    got = crop_resize((f for f in (img, img[::-1], img)), view, 16, out=dst)
    assert got is dst and np.array_equal(dst[1], img[::-1][2:18, 5:21]) and np.array_equal(dst[2], out[0])
    with pytest.raises(ValueError, match="frame 1 has size"):
        crop_resize([img, img[:10]], view, 16)
    with pytest.raises(ValueError, match="2 frames for an output of 3"):
        crop_resize(iter([img, img]), view, 16, out=dst)
    with pytest.raises(ValueError, match="more frames than the output's 3"):
        crop_resize(iter([img] * 4), view, 16, out=dst)
    for wrong in (np.zeros((3, 16, 16), np.uint8), np.zeros((3, 12, 12, 3), np.uint8), np.zeros((3, 16, 16, 3), np.float32),
                  np.zeros((3, 16, 32, 3), np.uint8)[:, :, ::2]):  # OpenCV would write a new array instead
        with pytest.raises(ValueError, match="out must be uint8"):
            crop_resize([img], view, 16, out=wrong)
    with pytest.raises(ValueError, match="no frames"):
        crop_resize([], view, 16)


def test_subpixel_box_warp_agrees_with_slice_and_resize():
    # A smooth image at two resolutions: the same normalised box cut from the half-size copy
    # (sub-pixel box, affine warp) matches the full-size exact cut.
    yy, xx = np.mgrid[0:128, 0:192]
    img = (127 + 60 * np.sin(xx / 9.0) + 60 * np.cos(yy / 7.0)).astype(np.uint8)
    view = ViewParams(np.zeros(1, np.int64), 1.0, (33 / 192, 17 / 128, 133 / 192, 117 / 128), False, 0)
    full = crop_resize([img], view, 50)[0].astype(float)
    import cv2
    half = cv2.resize(img, (96, 64), interpolation=cv2.INTER_AREA)
    from_half = crop_resize([half], view, 50)[0].astype(float)
    assert np.abs(full - from_half).mean() < 3.0
    # An exact box through the warp path gives the slice's answer.
    view_int = ViewParams(view.frames, 1.0, (32 / 192, 16 / 128, 132 / 192, 116 / 128), False, 0)
    nudged = ViewParams(view.frames, 1.0, (32 / 192 + 1e-4, 16 / 128, 132 / 192 + 1e-4, 116 / 128), False, 0)
    assert np.abs(crop_resize([img], view_int, 50)[0].astype(int) - crop_resize([img], nudged, 50)[0]).max() <= 2


def test_normalize_frames_per_channel():
    u8 = np.zeros((2, 4, 4, 3), np.uint8)
    u8[..., 0], u8[..., 1], u8[..., 2] = 255, 0, 128
    x = normalize_frames(u8, V.IMAGENET_MEAN, V.IMAGENET_STD)
    assert x.shape == (2, 3, 4, 4) and x.dtype == torch.float32
    expected = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225]
    assert torch.allclose(x[:, :, 0, 0], torch.tensor([expected, expected]), atol=1e-6)


def test_transform_boxes_known_answers():
    view = ViewParams(np.zeros(1, np.int64), 1.0, (0.25, 0.0, 0.75, 1.0), False, 0)
    boxes = np.array([[0.25, 0.5, 0.5, 1.0], [0.0, 0.0, 0.1, 0.1], [0.6, 0.2, 0.9, 0.4]], np.float32)
    valid = np.array([True, True, True])
    out, keep = transform_boxes(boxes, valid, view)
    np.testing.assert_allclose(out, [[0, 0.5, 0.5, 1], [0, 0, 0, 0], [0.7, 0.2, 1.0, 0.4]], atol=1e-6)
    assert keep.tolist() == [True, False, True]  # the second box left the view
    out, keep = transform_boxes(boxes, valid, ViewParams(view.frames, 1.0, view.crop, True, 0))
    np.testing.assert_allclose(out, [[0.5, 0.5, 1, 1], [0, 0, 0, 0], [0.0, 0.2, 0.3, 0.4]], atol=1e-6)
    _, keep = transform_boxes(boxes, np.array([False, True, True]), view)
    assert keep.tolist() == [False, False, True]  # padding stays padding


def test_color_jitter_seeded_bounded_and_off_at_zero():
    x = torch.rand(4, 3, 8, 8)
    assert torch.equal(color_jitter(x, 3, 0.0), x)
    a, b = color_jitter(x, 3, 0.4), color_jitter(x, 3, 0.4)
    assert torch.equal(a, b)
    assert not torch.equal(a, color_jitter(x, 4, 0.4))
    assert a.min() >= 0 and a.max() <= 1
    grey = torch.full((1, 3, 4, 4), 0.5)
    # Saturation and contrast leave a flat grey image grey; brightness scales it.
    out = color_jitter(grey, 11, 0.5)
    assert torch.allclose(out, out[:, :1].expand_as(out))


@pytest.mark.parametrize("seed", range(6))
def test_bright_square_and_its_box_land_on_the_same_output_pixels(seed):
    h, w, size = 96, 160, 48
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    x0, y0 = int(rng.integers(40, 100)), int(rng.integers(20, 60))
    img[y0 : y0 + 20, x0 : x0 + 24] = 255
    box = np.array([[x0 / w, y0 / h, (x0 + 24) / w, (y0 + 20) / h]], np.float32)
    view = draw_train_view(10, _cfg(size=size, scale_range=[1.0, 1.43]), rng, (h, w))
    view = ViewParams(view.frames, view.scale, view.crop, bool(seed % 2), 0)
    out = crop_resize([img], view, size)[0, :, :, 0]
    tb, keep = transform_boxes(box, np.array([True]), view)
    bright = out > 127
    if not keep[0]:
        assert not bright.any()
        return
    bx1, by1, bx2, by2 = tb[0] * size
    ys, xs = np.nonzero(bright)
    assert xs.min() >= bx1 - 1 and xs.max() <= bx2 and ys.min() >= by1 - 1 and ys.max() <= by2
    inner = np.zeros_like(bright)
    inner[int(np.ceil(by1 + 1)) : int(by2 - 1), int(np.ceil(bx1 + 1)) : int(bx2 - 1)] = True
    assert bright[inner].all()
