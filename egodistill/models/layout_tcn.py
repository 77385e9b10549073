"""A temporal CNN over box trajectories: a small layout model that learns from a few hundred clips.

STLT summarises each frame with a transformer and the clip with a causal transformer whose CLS
token starts as an average of near-identical frame summaries; trained from scratch on a few
hundred clips it stays at the class prior (docs/models.md measures it). This model reads the
trajectories directly: per frame, the first `boxes` detection slots (in the layout's order, the
detector's score order) become one feature vector (coordinates, score, presence, category,
hand side and contact state as one-hots), a per-frame linear layer embeds it, and 1D
convolutions over time (kernel 3: velocities, then accelerations) followed by mean and max
pooling over frames summarise the clip, whatever its frame count.

forward(layout) -> {head: logits [N, classes]}; `layout` as STLT's: boxes [N,T,B,4] float,
category/side/state [N,T,B] long, score [N,T,B] float, mask [N,T,B] bool (True = a real box).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from egodistill.models.heads import LinearHeads
from egodistill.models.registry import register_model
from egodistill.models.stlt import NUM_CATEGORIES, NUM_SIDES, NUM_STATES, check_layout

# per box: 4 coordinates, score, present, and one-hots of category, side and state
BOX_FEATURES = 4 + 1 + 1 + NUM_CATEGORIES + NUM_SIDES + NUM_STATES

LAYOUT_TCN_PRESETS: dict[str, dict[str, Any]] = {
    "layout_tcn_nano": dict(boxes=4, hidden=128, layers=2),
    "layout_tcn_small": dict(boxes=8, hidden=256, layers=3),
}


def box_features(layout: dict[str, torch.Tensor], boxes: int) -> torch.Tensor:
    """Return per-frame features [N, T, boxes * BOX_FEATURES] of the first `boxes` detection slots
    (slots past the layout's own count, and padded boxes, are all zeros)."""
    check_layout(layout, "layout TCN")
    mask = layout["mask"][:, :, :boxes].bool()
    parts = [
        layout["boxes"][:, :, :boxes].float(),
        layout["score"][:, :, :boxes, None].float(),
        mask[..., None].float(),
        nn.functional.one_hot(layout["category"][:, :, :boxes].long(), NUM_CATEGORIES).float(),
        nn.functional.one_hot(layout["side"][:, :, :boxes].long(), NUM_SIDES).float(),
        nn.functional.one_hot(layout["state"][:, :, :boxes].long(), NUM_STATES).float(),
    ]
    x = torch.cat(parts, dim=-1) * mask[..., None]  # [N, T, b, F]; a padded slot reads as zeros
    if x.shape[2] < boxes:
        x = nn.functional.pad(x, (0, 0, 0, boxes - x.shape[2]))
    return x.flatten(2)


class LayoutTCN(nn.Module):
    """Per-frame box features -> linear embedding -> `layers` x (Conv1d k3 - BatchNorm - ReLU) over
    time -> [mean, max] over frames -> heads. Features are 2 * hidden wide."""

    checkpoint_formats = ("egodistill",)
    first_layer = ""  # reads boxes, not channels: nothing to adapt

    def __init__(self, heads: dict[str, int], *, boxes: int = 4, hidden: int = 128, layers: int = 2) -> None:
        super().__init__()
        self.boxes = boxes
        self.embed = nn.Sequential(nn.Linear(boxes * BOX_FEATURES, hidden), nn.ReLU(inplace=True))
        self.temporal = nn.Sequential(*(
            nn.Sequential(nn.Conv1d(hidden, hidden, 3, padding=1, bias=False), nn.BatchNorm1d(hidden),
                          nn.ReLU(inplace=True))
            for _ in range(layers)))
        self.feature_dim: int = 2 * hidden
        self.head = LinearHeads(self.feature_dim, heads)

    @property
    def heads(self) -> dict[str, int]:
        return self.head.classes

    def features(self, layout: dict[str, torch.Tensor]) -> torch.Tensor:
        """Return clip features [N, 2 * hidden]: the temporal features' mean and max over frames."""
        x = self.embed(box_features(layout, self.boxes))  # [N, T, hidden]
        x = self.temporal(x.transpose(1, 2))  # [N, hidden, T]
        return torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1)

    def forward(self, layout: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.head(self.features(layout))


def _register(name: str, spec: dict[str, Any]) -> None:
    def build(heads: dict[str, int], in_channels: int, *, drop_path: float = 0.0) -> nn.Module:
        return LayoutTCN(heads, **spec)  # boxes, not channels; no residual branches to drop

    description = (f"temporal CNN over box trajectories: first {spec['boxes']} boxes per frame, "
                   f"hidden {spec['hidden']}, {spec['layers']} temporal conv layers")
    register_model(name, family="layout_tcn", description=description, reads="layout")(build)


for _name, _spec in LAYOUT_TCN_PRESETS.items():
    _register(_name, _spec)
