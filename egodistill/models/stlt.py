"""STLT: the spatio-temporal layout transformer (Radevski et al. 2021) for per-frame boxes.

Per frame, each box becomes an embedding (category + box coordinates + detector score + hand
side + hand contact state); a frame transformer with a CLS token (padded boxes masked out)
summarises the frame; a causal temporal transformer over the frame summaries, with a CLS token
placed *after* the last frame, summarises the clip; one linear layer per head classifies it.

Index conventions are the layout contract's (docs/architecture.md): category 0 pad, 1 hand,
2 object; side 0 left, 1 right, 2 none; state 0..4 (EPIC HandState), 5 none; `mask` True for a
real box. `checkpoints.py` re-orders the authors' embedding rows (their category 0 pad, 1 object,
2 hand; side and state shifted by one with 0 = none) when it loads their files.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from egodistill.models.heads import LinearHeads
from egodistill.models.registry import register_model

NUM_CATEGORIES, NUM_SIDES, NUM_STATES = 3, 3, 6
LAYOUT_KEYS = ("boxes", "category", "score", "side", "state", "mask")

# `stlt` is the authors' size (hidden 768, 8 heads, 6 + 6 layers, LayerNorm eps 0.1 on the
# embeddings, dropout 0.1); the small ones are for CPU work (`stlt_nano` underfits rather than
# overfits, so it has no dropout).
STLT_PRESETS: dict[str, dict[str, Any]] = {
    "stlt": dict(hidden=768, num_heads=8, frame_layers=6, temporal_layers=6, max_frames=32, dropout=0.1, embed_norm_eps=0.1),
    "stlt_small": dict(hidden=256, num_heads=4, frame_layers=2, temporal_layers=2, max_frames=32, dropout=0.1, embed_norm_eps=0.1),
    "stlt_nano": dict(hidden=64, num_heads=4, frame_layers=1, temporal_layers=1, max_frames=32, dropout=0.0, embed_norm_eps=0.1),
}


def example_layout(batch: int, frames: int, boxes: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Return a random layout input `{key: [batch, frames, boxes, ...]}` (about 70% of the box
    slots real), e.g. to measure a model's cost."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(batch, frames, boxes, 2, generator=g) * 0.5
    return {
        "boxes": torch.cat([xy, xy + 0.5], dim=-1),
        "category": torch.randint(1, NUM_CATEGORIES, (batch, frames, boxes), generator=g),
        "score": torch.rand(batch, frames, boxes, generator=g),
        "side": torch.randint(0, NUM_SIDES, (batch, frames, boxes), generator=g),
        "state": torch.randint(0, NUM_STATES, (batch, frames, boxes), generator=g),
        "mask": torch.rand(batch, frames, boxes, generator=g) < 0.7,
    }


def check_layout(layout: dict[str, torch.Tensor], model: str) -> tuple[int, int, int]:
    """Return (N, T, B) of a layout input; raise KeyError for a missing key and ValueError for a
    tensor whose shape does not match (`model` names the model in the message)."""
    missing = [k for k in LAYOUT_KEYS if k not in layout]
    if missing:
        raise KeyError(f"{model} layout input lacks keys {missing}; expected {list(LAYOUT_KEYS)}")
    if layout["category"].dim() != 3:
        raise ValueError(f"layout 'category' must be [N, T, B], got {list(layout['category'].shape)}")
    n, t, b = layout["category"].shape
    if layout["boxes"].shape != (n, t, b, 4):
        raise ValueError(f"layout 'boxes' must be [N, T, B, 4] = {[n, t, b, 4]}, got {list(layout['boxes'].shape)}")
    for k in ("score", "side", "state", "mask"):
        if layout[k].shape != (n, t, b):
            raise ValueError(f"layout '{k}' must be [N, T, B] = {[n, t, b]}, got {list(layout[k].shape)}")
    return n, t, b


def _encoder(hidden: int, heads: int, layers: int, dropout: float) -> nn.TransformerEncoder:
    """Post-norm GELU transformer encoder, batch first (parameter names as nn.TransformerEncoder)."""
    layer = nn.TransformerEncoderLayer(
        d_model=hidden, nhead=heads, dim_feedforward=4 * hidden, dropout=dropout, activation="gelu", batch_first=True
    )
    # No nested-tensor fast path: it zeroes padded outputs in eval only, so train and eval would differ.
    return nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)


class BoxEmbedding(nn.Module):
    """Sum of category, box, score, side and state embeddings, then LayerNorm and dropout."""

    def __init__(self, hidden: int, dropout: float, norm_eps: float) -> None:
        super().__init__()
        self.category = nn.Embedding(NUM_CATEGORIES, hidden)
        self.box = nn.Linear(4, hidden)
        self.score = nn.Linear(1, hidden)
        self.side = nn.Embedding(NUM_SIDES, hidden)
        self.state = nn.Embedding(NUM_STATES, hidden)
        self.norm = nn.LayerNorm(hidden, eps=norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, layout: dict[str, torch.Tensor]) -> torch.Tensor:
        """Return box embeddings [N, T, B, hidden] of a layout dict with leading [N, T, B]."""
        x = (
            self.category(layout["category"])
            + self.box(layout["boxes"])
            + self.score(layout["score"].unsqueeze(-1))
            + self.side(layout["side"])
            + self.state(layout["state"])
        )
        return self.dropout(self.norm(x))


class STLT(nn.Module):
    """forward(layout) -> {head: logits [N, classes]}; `layout` as in the module docstring with
    boxes [N,T,B,4] float, category/side/state [N,T,B] long, score [N,T,B] float, mask [N,T,B] bool."""

    checkpoint_formats = ("authors_stlt", "egodistill")
    first_layer = ""  # reads boxes, not channels: nothing to adapt

    @staticmethod
    def checkpoint_key(key: str, fmt: str) -> str | None:
        """Return our key for one of the authors' Stlt backbone keys (None if not one)."""
        from egodistill.models.checkpoints import authors_stlt_key

        return authors_stlt_key(key)

    def __init__(
        self,
        heads: dict[str, int],
        *,
        hidden: int = 768,
        num_heads: int = 8,
        frame_layers: int = 6,
        temporal_layers: int = 6,
        max_frames: int = 32,
        dropout: float = 0.1,
        embed_norm_eps: float = 0.1,
    ) -> None:
        super().__init__()
        self.max_frames = max_frames
        self.feature_dim: int = hidden
        self.embed = BoxEmbedding(hidden, dropout, embed_norm_eps)
        self.frame_cls = nn.Parameter(torch.zeros(1, 1, hidden))
        self.frame_encoder = _encoder(hidden, num_heads, frame_layers, dropout)
        self.position = nn.Embedding(max_frames, hidden)
        self.temporal_norm = nn.LayerNorm(hidden, eps=embed_norm_eps)
        self.temporal_dropout = nn.Dropout(dropout)
        self.video_cls = nn.Parameter(torch.zeros(1, 1, hidden))
        self.temporal_encoder = _encoder(hidden, num_heads, temporal_layers, dropout)
        self.head = LinearHeads(hidden, heads)

    @property
    def heads(self) -> dict[str, int]:
        return self.head.classes

    def _check(self, layout: dict[str, torch.Tensor]) -> tuple[int, int, int]:
        n, t, b = check_layout(layout, "STLT")
        if t > self.max_frames:
            raise ValueError(f"STLT was built for at most {self.max_frames} frames, got {t}")
        return n, t, b

    def frame_embeddings(self, layout: dict[str, torch.Tensor]) -> torch.Tensor:
        """Return the frame transformer's CLS output per frame, [N, T, hidden]."""
        n, t, b = self._check(layout)
        x = self.embed(layout).flatten(0, 1)  # [N*T, B, D]
        x = torch.cat([self.frame_cls.expand(n * t, 1, -1), x], dim=1)  # [N*T, 1+B, D]
        pad = ~layout["mask"].flatten(0, 1).bool()  # True = ignore
        pad = torch.cat([pad.new_zeros(n * t, 1), pad], dim=1)  # the CLS token is never padding
        x = self.frame_encoder(x, src_key_padding_mask=pad)
        return x[:, 0].view(n, t, -1)

    def temporal_embeddings(self, layout: dict[str, torch.Tensor]) -> torch.Tensor:
        """Return the causal temporal transformer's outputs [N, T+1, hidden]: position i < T sees
        frames 0..i only; the last position (the clip CLS token) sees every frame."""
        frames = self.frame_embeddings(layout)  # [N, T, D]
        n, t, _ = frames.shape
        x = frames + self.position(torch.arange(t, device=frames.device))
        x = self.temporal_dropout(self.temporal_norm(x))
        x = torch.cat([x, self.video_cls.expand(n, 1, -1)], dim=1)  # [N, T+1, D]
        causal = nn.Transformer.generate_square_subsequent_mask(t + 1, device=x.device, dtype=x.dtype)
        return self.temporal_encoder(x, mask=causal, is_causal=True)

    def features(self, layout: dict[str, torch.Tensor]) -> torch.Tensor:
        """Return clip features [N, hidden] (the temporal CLS output)."""
        return self.temporal_embeddings(layout)[:, -1]

    def forward(self, layout: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.head(self.features(layout))


def _register(name: str, spec: dict[str, Any]) -> None:
    def build(heads: dict[str, int], in_channels: int, *, drop_path: float = 0.0) -> nn.Module:
        return STLT(heads, **spec)  # boxes, not channels; its regulariser is `dropout`, not drop-path

    description = f"STLT layout transformer (Radevski et al. 2021): hidden {spec['hidden']}, " \
                  f"{spec['frame_layers']} + {spec['temporal_layers']} layers"
    register_model(name, family="stlt", description=description, reads="layout")(build)


for _name, _spec in STLT_PRESETS.items():
    _register(_name, _spec)
