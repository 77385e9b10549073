"""The box-trajectory TCN: its per-frame features, any frame count, and that it reads motion."""
from __future__ import annotations

import pytest
import torch

from egodistill.config import ModelConfig
from egodistill.models import build_model
from egodistill.models.layout_tcn import BOX_FEATURES, LayoutTCN, box_features
from egodistill.models.stlt import example_layout


def _layout(boxes: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """A layout dict around `boxes` [N, T, B, 4]: box 0 a left hand, the others objects."""
    n, t, b = boxes.shape[:3]
    category = torch.full((n, t, b), 2)
    category[:, :, 0] = 1
    side = torch.full((n, t, b), 2)
    side[:, :, 0] = 0
    return {"boxes": boxes, "category": category, "score": torch.full((n, t, b), 0.9), "side": side,
            "state": torch.full((n, t, b), 3), "mask": mask}


def test_box_features_lay_out_each_slot_and_zero_padding():
    boxes = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]]).expand(1, 1, 2, 4)
    mask = torch.tensor([[[True, False]]])
    x = box_features(_layout(boxes, mask), boxes=3)
    assert x.shape == (1, 1, 3 * BOX_FEATURES)
    hand = x[0, 0, :BOX_FEATURES]
    # coordinates, score, present, category one-hot (hand = 1), side one-hot (left = 0), state one-hot (3)
    expected = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.9, 1.0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0])
    torch.testing.assert_close(hand, expected)
    # the padded second box and the third slot, which the layout does not have, read as zeros
    assert not x[0, 0, BOX_FEATURES:].any()


def test_reads_any_frame_count_and_rejects_bad_boxes():
    model = build_model(ModelConfig(arch="layout_tcn_nano", modality="layout"), {"verb": 3}, 3).eval()
    for frames in (1, 4, 16):
        assert model(example_layout(2, frames, 6))["verb"].shape == (2, 3)
    bad = example_layout(2, 4, 6)
    bad["boxes"] = bad["boxes"][..., :2]
    with pytest.raises(ValueError, match=r"'boxes' must be \[N, T, B, 4\]"):
        model(bad)
    with pytest.raises(KeyError, match=r"layout TCN layout input lacks keys \[.state.\]"):
        model({k: v for k, v in example_layout(2, 4, 6).items() if k != "state"})


def test_learns_the_direction_of_centred_motions():
    # The object moves up (class 0) or down (class 1) about a random centre: no single frame,
    # and not the average frame, tells the class, only the change over time.
    g = torch.Generator().manual_seed(0)
    n, t = 128, 8
    labels = torch.randint(0, 2, (n,), generator=g)
    centre = 0.3 + 0.4 * torch.rand(n, 1, generator=g)
    direction = 1.0 - 2.0 * labels[:, None].float()
    y = centre - direction * 0.1 * torch.linspace(-1, 1, t)
    obj = torch.stack([torch.full_like(y, 0.4), y - 0.05, torch.full_like(y, 0.6), y + 0.05], dim=-1)
    hand = obj + 0.05
    layout = _layout(torch.stack([hand, obj], dim=2), torch.ones(n, t, 2, dtype=torch.bool))

    torch.manual_seed(0)
    model = LayoutTCN({"verb": 2}, boxes=2, hidden=32, layers=1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(layout)["verb"], labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(layout)["verb"].argmax(1) == labels).float().mean().item()
    assert accuracy >= 0.95
