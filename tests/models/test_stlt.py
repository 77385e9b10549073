"""STLT: padding invariance, causality, box-order invariance, input checks, learning."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from egodistill.config import ModelConfig
from egodistill.models import build_model, get_model_spec
from egodistill.models.stlt import NUM_CATEGORIES, STLT, STLT_PRESETS, example_layout


def _model() -> STLT:
    torch.manual_seed(0)
    return STLT({"action": 6}, hidden=32, num_heads=4, frame_layers=2, temporal_layers=2, max_frames=8).eval()


def _layout(n=2, t=5, b=6, seed=0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, t, b, 2, generator=g) * 0.6
    mask = torch.rand(n, t, b, generator=g) < 0.6
    mask[..., 0] = True
    mask[0, 1] = False  # one frame with no box at all
    return {
        "boxes": torch.cat([xy, xy + 0.3], dim=-1),
        "category": torch.randint(1, 3, (n, t, b), generator=g),
        "score": torch.rand(n, t, b, generator=g),
        "side": torch.randint(0, 3, (n, t, b), generator=g),
        "state": torch.randint(0, 6, (n, t, b), generator=g),
        "mask": mask,
    }


def _scramble_padding(layout, seed=1):
    """Return `layout` with random values in every padded slot."""
    other = _layout(*layout["mask"].shape, seed=seed)
    pad = ~layout["mask"]
    out = {}
    for k, v in layout.items():
        if k == "mask":
            out[k] = v
            continue
        m = pad.unsqueeze(-1) if v.dim() == 4 else pad
        out[k] = torch.where(m, other[k], v)
    return out


@torch.no_grad()
def test_padded_boxes_do_not_change_the_output():
    model = _model()
    layout = _layout()
    ref = model(layout)["action"]
    torch.testing.assert_close(model(_scramble_padding(layout))["action"], ref, atol=1e-5, rtol=1e-5)
    # Extra padding slots (more boxes per frame, all masked) change nothing either.
    wider = {k: torch.cat([v, v[:, :, :3]], dim=2) for k, v in _scramble_padding(layout, seed=2).items()}
    wider["mask"][:, :, -3:] = False
    torch.testing.assert_close(model(wider)["action"], ref, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(ref).all()


@torch.no_grad()
def test_later_frames_do_not_change_earlier_frame_embeddings():
    model = _model()
    layout = _layout(t=6)
    ref = model.temporal_embeddings(layout)  # [N, T+1, D]
    assert ref.shape == (2, 7, 32)
    k = 3
    changed = {key: v.clone() for key, v in layout.items()}
    changed["boxes"][:, k:] = changed["boxes"][:, k:].flip(-1)
    changed["category"][:, k:] = 3 - changed["category"][:, k:]
    out = model.temporal_embeddings(changed)
    torch.testing.assert_close(out[:, :k], ref[:, :k], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out[:, k], ref[:, k], atol=1e-3)
    # The clip CLS token, placed after the last frame, sees every frame.
    assert not torch.allclose(out[:, -1], ref[:, -1], atol=1e-3)
    torch.testing.assert_close(model.features(layout), ref[:, -1])


@torch.no_grad()
def test_box_order_within_a_frame_does_not_matter():
    model = _model()
    layout = _layout()
    perm = torch.randperm(layout["mask"].shape[2], generator=torch.Generator().manual_seed(3))
    shuffled = {k: v[:, :, perm] for k, v in layout.items()}
    torch.testing.assert_close(model(shuffled)["action"], model(layout)["action"], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_frame_order_matters():
    model = _model()
    layout = _layout()
    reversed_ = {k: v.flip(1) for k, v in layout.items()}
    assert not torch.allclose(model(reversed_)["action"], model(layout)["action"], atol=1e-4)


def test_bad_input_is_named():
    model = _model()
    layout = _layout()
    with pytest.raises(KeyError, match="mask"):
        model({k: v for k, v in layout.items() if k != "mask"})
    bad = dict(layout, boxes=layout["boxes"][..., :2])
    with pytest.raises(ValueError, match="boxes"):
        model(bad)
    with pytest.raises(ValueError, match="at most 8 frames"):
        model(_layout(t=9))


def test_presets_and_build():
    assert STLT_PRESETS["stlt"]["hidden"] == 768 and STLT_PRESETS["stlt"]["frame_layers"] == 6
    assert get_model_spec("stlt_nano").family == "stlt"
    model = build_model(ModelConfig(arch="stlt_nano", modality="layout"), {"verb": 4, "noun": 5}, 3)
    assert model.heads == {"verb": 4, "noun": 5} and model.feature_dim == 64
    out = model(_layout())
    assert out["verb"].shape == (2, 4) and out["noun"].shape == (2, 5)


def test_stlt_learns_a_signal():
    """The class is where the hand is (left / right half): a few steps drive the loss down."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="stlt_nano", modality="layout"), {"action": 2}, 3)
    layout = _layout(n=16, t=4, seed=5)
    labels = torch.arange(16) % 2
    layout["boxes"][..., [0, 2]] = layout["boxes"][..., [0, 2]] * 0.4 + 0.5 * labels.view(-1, 1, 1, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = F.cross_entropy(model(layout)["action"], labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_example_layout_is_a_valid_input_with_most_slots_real():
    x = example_layout(3, 5, 20, seed=1)
    assert all(x[k].shape[:3] == (3, 5, 20) for k in x) and x["boxes"].shape[-1] == 4
    assert ((x["category"] >= 1) & (x["category"] < NUM_CATEGORIES)).all()  # hand or object, never pad
    assert (x["boxes"][..., 2:] > x["boxes"][..., :2]).all()
    assert 0.55 < x["mask"].float().mean() < 0.85
    assert torch.equal(example_layout(3, 5, 20, seed=1)["boxes"], x["boxes"])  # seeded
    assert _model()(example_layout(2, 5, 6))["action"].shape == (2, 6)
