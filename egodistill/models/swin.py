"""Video Swin Transformer (Liu et al. 2022) on torchvision's `SwinTransformer3d`.

The architecture is torchvision's; this file only (a) lets the patch embedding read any number
of input channels (RGB 3, flow 2 or 3, audio spectrograms 3), (b) swaps the classifier for one
linear head per task head, and (c) offers a `scaled_dot_product_attention` path for the
(shifted) window attention, numerically equal to torchvision's hand-written one.

Module names follow torchvision: `backbone.patch_embed.proj`, `backbone.features.<2i>.<j>`
(blocks of stage i), `backbone.features.<2i+1>` (patch merging after stage i), `backbone.norm`;
`checkpoints.py` maps the official Video Swin names onto these.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.swin_transformer import SwinTransformerBlock
from torchvision.models.video.swin_transformer import (
    PatchEmbed3d,
    ShiftedWindowAttention3d,
    SwinTransformer3d,
    _compute_attention_mask_3d,
    _compute_pad_size_3d,
    _get_window_and_shift_size,
)

from egodistill.models.heads import LinearHeads
from egodistill.models.registry import register_model

# Architectures of the paper's sizes (Video Swin, Kinetics-400 configs) and small CPU presets.
# `sdpa`: window attention through F.scaled_dot_product_attention (see benchmarks/models.py).
SWIN_PRESETS: dict[str, dict[str, Any]] = {
    "swin_t": dict(patch_size=(2, 4, 4), embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=(8, 7, 7)),
    "swin_s": dict(patch_size=(2, 4, 4), embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), window_size=(8, 7, 7)),
    "swin_b": dict(patch_size=(2, 4, 4), embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), window_size=(8, 7, 7)),
    # CPU presets for the synthetic benchmark and tests: 8x32x32 or 8x48x48 clips.
    "swin_micro": dict(patch_size=(2, 4, 4), embed_dim=48, depths=(2, 2, 2), num_heads=(2, 4, 8), window_size=(4, 4, 4)),
    "swin_nano": dict(patch_size=(2, 4, 4), embed_dim=32, depths=(1, 1, 2), num_heads=(1, 2, 4), window_size=(2, 4, 4)),
}


def window_attention_sdpa(
    x: torch.Tensor,
    qkv: nn.Linear,
    proj: nn.Linear,
    relative_position_bias: torch.Tensor,
    window_size: list[int],
    num_heads: int,
    shift_size: list[int],
    attention_dropout: float = 0.0,
    dropout: float = 0.0,
    training: bool = False,
) -> torch.Tensor:
    """(Shifted) window multi-head self-attention with `F.scaled_dot_product_attention`.

    The same computation as torchvision's `shifted_window_attention_3d` (padding, cyclic shift,
    window partition, relative position bias, -100 shift mask), with the bias and the shift mask
    folded into SDPA's additive `attn_mask`. `x`: [B, T, H, W, C]; returns [B, T, H, W, C].
    """
    b, t, h, w, c = x.shape
    pad = _compute_pad_size_3d((t, h, w), (window_size[0], window_size[1], window_size[2]))
    x = F.pad(x, (0, 0, 0, pad[2], 0, pad[1], 0, pad[0]))
    _, tp, hp, wp, _ = x.shape
    shifted = sum(shift_size) > 0
    if shifted:
        x = torch.roll(x, shifts=(-shift_size[0], -shift_size[1], -shift_size[2]), dims=(1, 2, 3))

    nt, nh, nw = tp // window_size[0], hp // window_size[1], wp // window_size[2]
    n_win, n_tok = nt * nh * nw, window_size[0] * window_size[1] * window_size[2]
    x = x.view(b, nt, window_size[0], nh, window_size[1], nw, window_size[2], c)
    x = x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(b * n_win, n_tok, c)  # [B*nW, N, C]

    q, k, v = qkv(x).reshape(b * n_win, n_tok, 3, num_heads, c // num_heads).permute(2, 0, 3, 1, 4)  # 3 x [B*nW, nH, N, hd]
    bias = relative_position_bias  # [1, nH, N, N]
    if shifted:
        shift_mask = _compute_attention_mask_3d(x, (tp, hp, wp), tuple(window_size), tuple(shift_size))  # [nW, N, N]
        bias = bias + shift_mask.unsqueeze(1)  # [nW, nH, N, N]
        # Windows of one clip are contiguous in the B*nW axis: view it as [B, nW] to broadcast.
        q, k, v = (z.view(b, n_win, num_heads, n_tok, c // num_heads) for z in (q, k, v))
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=bias.to(q.dtype), dropout_p=attention_dropout if training else 0.0
    )  # [..., nH, N, hd]
    x = out.reshape(b * n_win, num_heads, n_tok, c // num_heads).transpose(1, 2).reshape(b * n_win, n_tok, c)
    x = F.dropout(proj(x), p=dropout, training=training)

    x = x.view(b, nt, nh, nw, window_size[0], window_size[1], window_size[2], c)
    x = x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, tp, hp, wp, c)
    if shifted:
        x = torch.roll(x, shifts=(shift_size[0], shift_size[1], shift_size[2]), dims=(1, 2, 3))
    return x[:, :t, :h, :w, :].contiguous()


class WindowAttention3d(ShiftedWindowAttention3d):
    """torchvision's 3D (shifted) window attention with an optional SDPA path.

    Same parameters and buffers (`qkv`, `proj`, `relative_position_bias_table`,
    `relative_position_index`); `sdpa=True` routes the forward through `window_attention_sdpa`.
    """

    sdpa: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.sdpa:
            return super().forward(x)
        _, t, h, w, _ = x.shape
        window_size, shift_size = _get_window_and_shift_size(self.shift_size.copy(), [t, h, w], self.window_size.copy())
        bias = self.get_relative_position_bias(window_size)
        return window_attention_sdpa(
            x, self.qkv, self.proj, bias, window_size, self.num_heads, shift_size,
            self.attention_dropout, self.dropout, self.training,
        )


def _block(*args: Any, attn_layer: Any = None, **kwargs: Any) -> nn.Module:
    # torchvision passes attn_layer=ShiftedWindowAttention3d explicitly; use our subclass instead.
    return SwinTransformerBlock(*args, attn_layer=WindowAttention3d, **kwargs)


class VideoSwin(nn.Module):
    """Video Swin backbone, mean-pooled features, one linear layer per head.

    forward(x: [N, T, C, H, W]) -> {head: logits [N, classes]}. `features(x)` returns the pooled
    features [N, feature_dim]. `.heads` is {head: classes}; `.in_channels` the channels read.
    """

    # Weight files it loads (checkpoints.load_official_checkpoint) and its input layer.
    checkpoint_formats = ("official", "authors", "egodistill")
    first_layer = "backbone.patch_embed.proj.weight"

    @staticmethod
    def checkpoint_key(key: str, fmt: str) -> str | None:
        """Return our key for an official / authors' Video Swin backbone key (None if not one)."""
        from egodistill.models.checkpoints import official_swin_key

        return official_swin_key(key)

    def __init__(
        self,
        heads: dict[str, int],
        in_channels: int = 3,
        *,
        patch_size: tuple[int, int, int] = (2, 4, 4),
        embed_dim: int = 96,
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] = (3, 6, 12, 24),
        window_size: tuple[int, int, int] = (8, 7, 7),
        mlp_ratio: float = 4.0,
        drop_path: float = 0.2,
        sdpa: bool = True,
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {depths} and num_heads {num_heads} must have the same length")
        if sum(depths) < 2:
            raise ValueError(f"depths {depths}: Video Swin needs at least 2 blocks (drop-path schedule)")
        self.in_channels = in_channels
        self.backbone = SwinTransformer3d(
            patch_size=list(patch_size),
            embed_dim=embed_dim,
            depths=list(depths),
            num_heads=list(num_heads),
            window_size=list(window_size),
            mlp_ratio=mlp_ratio,
            stochastic_depth_prob=drop_path,
            num_classes=1,
            block=_block,
            patch_embed=partial(PatchEmbed3d, in_channels=in_channels),
        )
        # torchvision hard-codes attn_layer=ShiftedWindowAttention3d in its block calls, which our
        # `_block` overrides; the classifier is ours (one per head), not torchvision's.
        self.backbone.head = nn.Identity()
        self.feature_dim: int = self.backbone.num_features
        self.head = LinearHeads(self.feature_dim, heads)
        self.set_sdpa(sdpa)

    @property
    def heads(self) -> dict[str, int]:
        return self.head.classes

    def set_sdpa(self, enabled: bool) -> None:
        """Use `scaled_dot_product_attention` (True) or torchvision's explicit attention (False)."""
        self.sdpa = enabled
        for m in self.modules():
            if isinstance(m, WindowAttention3d):
                m.sdpa = enabled

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Return mean-pooled, normalised features [N, feature_dim] of clips x [N, T, C, H, W]."""
        if x.dim() != 5 or x.shape[2] != self.in_channels:
            raise ValueError(
                f"Video Swin expects clips [N, T, C={self.in_channels}, H, W], got shape {tuple(x.shape)}"
            )
        return self.backbone(x.permute(0, 2, 1, 3, 4))  # [N, C, T, H, W] in, [N, D] out

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(self.features(x))


def _register(name: str, spec: dict[str, Any]) -> None:
    def build(heads: dict[str, int], in_channels: int, *, drop_path: float = 0.2) -> nn.Module:
        return VideoSwin(heads, in_channels, drop_path=drop_path, **spec)

    description = (f"Video Swin (Liu et al. 2022), torchvision: embed {spec['embed_dim']}, depths {spec['depths']}, "
                   f"window {spec['window_size']}")
    register_model(name, family="swin", description=description)(build)


for _name, _spec in SWIN_PRESETS.items():
    _register(_name, _spec)
