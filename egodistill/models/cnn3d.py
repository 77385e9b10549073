"""Small 3D CNNs for CPU budgets: a plain conv3d-BN-ReLU stack and an X3D-style depthwise variant.

A vision transformer trained from scratch on a few hundred clips does not find motion in pixels
within minutes on a CPU; a small 3D CNN does (docs/distillation.md measures both on the demo's
data). These presets are the demo's RGB baseline and students and the tests' fast video models.

* `cnn3d_*`: a stem and stages of `Conv3d(3x3x3) - BatchNorm - ReLU`, each stage downsampling by
  its stride (spatial first, then time), global mean pooling.
* `x3d_*`: X3D-style stages (Feichtenhofer 2020) of inverted bottlenecks: 1x1x1 expansion,
  3x3x3 depthwise convolution (the stride), 1x1x1 projection, residual connection; a fraction of
  the FLOPs of the plain stack at the same widths.

forward(x: [N, T, C, H, W]) -> {head: logits [N, classes]}; `features(x)` -> [N, feature_dim].
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.ops import StochasticDepth

from egodistill.models.heads import LinearHeads
from egodistill.models.registry import register_model

Stride = tuple[int, int, int]

# widths: channels after the stem and after each stage; strides: (t, h, w) of the stem and each stage.
CNN3D_PRESETS: dict[str, dict[str, Any]] = {
    "cnn3d_nano": dict(block="plain", widths=(16, 32, 64, 96), strides=((1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2))),
    "cnn3d_micro": dict(block="plain", widths=(32, 64, 96, 128), strides=((1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2))),
    "x3d_nano": dict(block="x3d", widths=(24, 48, 96, 192), strides=((1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2)),
                     depths=(1, 2, 2), expansion=2.25),
}


def conv_bn_relu(c_in: int, c_out: int, stride: Stride, groups: int = 1, kernel: int = 3) -> nn.Sequential:
    """Return Conv3d(kernel^3, padding kernel//2, no bias) - BatchNorm3d - ReLU."""
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm3d(c_out),
        nn.ReLU(inplace=True),
    )


class InvertedBottleneck3d(nn.Module):
    """1x1x1 expand - 3x3x3 depthwise (strided) - 1x1x1 project, plus a (projected) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: Stride, expansion: float, drop_path: float) -> None:
        super().__init__()
        hidden = int(round(c_in * expansion))
        self.expand = conv_bn_relu(c_in, hidden, (1, 1, 1), kernel=1)
        self.depthwise = conv_bn_relu(hidden, hidden, stride, groups=hidden)
        self.project = nn.Sequential(nn.Conv3d(hidden, c_out, 1, bias=False), nn.BatchNorm3d(c_out))
        self.shortcut: nn.Module = nn.Identity()
        if c_in != c_out or stride != (1, 1, 1):
            self.shortcut = nn.Sequential(nn.Conv3d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm3d(c_out))
        self.drop_path = StochasticDepth(drop_path, "row")
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return self.act(self.shortcut(x) + self.drop_path(y))


class VideoCNN(nn.Module):
    """A small 3D CNN over clips [N, T, C, H, W], mean-pooled features, one linear layer per head."""

    checkpoint_formats = ("egodistill",)

    def __init__(
        self,
        heads: dict[str, int],
        in_channels: int = 3,
        *,
        widths: tuple[int, ...] = (32, 64, 96, 128),
        strides: tuple[Stride, ...] = ((1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2)),
        block: str = "plain",
        depths: tuple[int, ...] | None = None,
        expansion: float = 2.25,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if len(widths) != len(strides) or len(widths) < 2:
            raise ValueError(f"widths {widths} and strides {strides} need the same length (>= 2): stem + stages")
        self.in_channels, self.feature_dim = in_channels, widths[-1]
        self.first_layer = "stem.0.weight"
        self.stem = conv_bn_relu(in_channels, widths[0], tuple(strides[0]))
        stages: list[nn.Module] = []
        for i, (c_in, c_out, stride) in enumerate(zip(widths[:-1], widths[1:], strides[1:])):
            if block == "plain":
                stages.append(conv_bn_relu(c_in, c_out, tuple(stride)))
                continue
            n = (depths or (1,) * (len(widths) - 1))[i]
            stages.append(nn.Sequential(*(
                InvertedBottleneck3d(c_in if j == 0 else c_out, c_out, tuple(stride) if j == 0 else (1, 1, 1),
                                     expansion, drop_path)
                for j in range(n))))
        self.stages = nn.Sequential(*stages)
        self.head = LinearHeads(self.feature_dim, heads)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        # oneDNN (CPU) and cuDNN run 3D convolutions faster on channels-last activations.
        self.to(memory_format=torch.channels_last_3d)

    @property
    def heads(self) -> dict[str, int]:
        return self.head.classes

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Return mean-pooled features [N, feature_dim] of clips x [N, T, C, H, W]."""
        if x.dim() != 5 or x.shape[2] != self.in_channels:
            raise ValueError(f"VideoCNN expects clips [N, T, C={self.in_channels}, H, W], got shape {tuple(x.shape)}")
        x = x.transpose(1, 2).contiguous(memory_format=torch.channels_last_3d)  # [N, C, T, H, W]
        return self.stages(self.stem(x)).mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(self.features(x))


def _register(name: str, spec: dict[str, Any]) -> None:
    kind = "X3D-style depthwise inverted bottlenecks" if spec["block"] == "x3d" else "conv3d-BN-ReLU stages"
    description = f"small 3D CNN ({kind}), widths {spec['widths']}"

    def build(heads: dict[str, int], in_channels: int, *, drop_path: float = 0.0) -> nn.Module:
        return VideoCNN(heads, in_channels, drop_path=drop_path, **spec)

    register_model(name, family="cnn3d", description=description)(build)


for _name, _spec in CNN3D_PRESETS.items():
    _register(_name, _spec)
