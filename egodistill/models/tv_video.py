"""torchvision's video networks as teachers or students: R3D-18, MC3-18, R(2+1)D-18, S3D, MViTv2-S.

The architectures are torchvision's (`torchvision.models.video`); this module (a) lets the first
convolution read any number of input channels (RGB 3, flow 2 or 3, audio), (b) swaps the
Kinetics classifier for one linear head per task head over the pooled features, and (c) reads
torchvision's published Kinetics-400 weight files (`model.pretrained=r3d_18-b3b3357e.pth`) with a
strict key check (`checkpoints.load_official_checkpoint`): the backbone's keys keep torchvision's
names under `backbone.`, the file's classifier goes to a head named `kinetics400` when the model
has one, and the first convolution is adapted when the channel counts differ.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models import video as tv

from egodistill.models.heads import LinearHeads
from egodistill.models.registry import register_model


def _widen_first_conv(conv: nn.Conv3d, in_channels: int) -> nn.Conv3d:
    """Return a Conv3d like `conv` reading `in_channels` channels (fresh weights; a pretrained
    file's are adapted when it is loaded)."""
    return nn.Conv3d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                     conv.dilation, conv.groups, bias=conv.bias is not None)


@dataclass(frozen=True)
class _Arch:
    build: Callable[..., nn.Module]  # torchvision's constructor
    classifier: str  # attribute replaced by our heads
    file_classifier: str  # the Linear / Conv3d of the classifier in a weight file
    feature_dim: int
    first_conv: str  # module path of the first convolution
    drop_path: bool = False  # the constructor takes `stochastic_depth_prob`
    clip: tuple[int, int] | None = None  # the only (frames, size) it reads, when it has one


_ARCHS: dict[str, _Arch] = {
    "r3d_18": _Arch(tv.r3d_18, "fc", "fc", 512, "stem.0"),
    "mc3_18": _Arch(tv.mc3_18, "fc", "fc", 512, "stem.0"),
    "r2plus1d_18": _Arch(tv.r2plus1d_18, "fc", "fc", 512, "stem.0"),
    # S3D's forward averages its classifier's output map over (T, H, W); without the classifier
    # that is the pooled features.
    "s3d": _Arch(tv.s3d, "classifier", "classifier.1", 1024, "features.0.0.0"),
    # torchvision builds MViT for 16x224 clips (its position tables and pooled sizes).
    "mvit_v2_s": _Arch(tv.mvit_v2_s, "head", "head.1", 768, "conv_proj", drop_path=True, clip=(16, 224)),
}


class TorchvisionVideo(nn.Module):
    """A torchvision video network, pooled features, one linear layer per head.

    forward(x: [N, T, C, H, W]) -> {head: logits [N, classes]}; `features(x)` -> [N, feature_dim].
    Keys: `backbone.<torchvision name>`, `head.<head>.weight|bias`.
    """

    checkpoint_formats = ("torchvision", "egodistill")

    def __init__(self, arch: str, heads: dict[str, int], in_channels: int = 3, *, drop_path: float = 0.0) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        spec = _ARCHS[arch]
        self._file_classifier = spec.file_classifier
        self.backbone = spec.build(weights=None, **({"stochastic_depth_prob": drop_path} if spec.drop_path else {}))
        self.clip = spec.clip
        setattr(self.backbone, spec.classifier, nn.Identity())
        first, feature_dim = spec.first_conv, spec.feature_dim
        parent, _, leaf = first.rpartition(".")
        owner = self.backbone.get_submodule(parent) if parent else self.backbone
        if in_channels != 3:
            setattr(owner, leaf, _widen_first_conv(getattr(owner, leaf), in_channels))
        self.arch, self.in_channels, self.feature_dim = arch, in_channels, feature_dim
        self.first_layer = f"backbone.{first}.weight"
        self.head = LinearHeads(feature_dim, heads)

    @property
    def heads(self) -> dict[str, int]:
        return self.head.classes

    def checkpoint_key(self, key: str, fmt: str) -> str | None:
        """Return our key for a torchvision file's body key (`backbone.` + its name)."""
        return f"backbone.{key}"

    def from_torchvision(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Return a torchvision state dict with its classifier named `cls_head.fc_cls` (a Linear's
        shape; S3D's 1x1x1 convolution flattened), which the loader maps to the `kinetics400` head."""
        out = {}
        for key, value in state.items():
            if key.startswith(self._file_classifier + "."):
                param = key.rsplit(".", 1)[1]
                out[f"cls_head.fc_cls.{param}"] = value.flatten(1) if param == "weight" else value
            else:
                out[key] = value
        return out

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Return pooled features [N, feature_dim] of clips x [N, T, C, H, W]."""
        if x.dim() != 5 or x.shape[2] != self.in_channels:
            raise ValueError(f"{self.arch} expects clips [N, T, C={self.in_channels}, H, W], got shape {tuple(x.shape)}")
        if self.clip and (x.shape[1], x.shape[3], x.shape[4]) != (self.clip[0], self.clip[1], self.clip[1]):
            raise ValueError(f"{self.arch} reads clips of exactly {self.clip[0]} frames of {self.clip[1]}x{self.clip[1]} "
                             f"(torchvision builds it for that shape; set data.num_frames and data.size), "
                             f"got shape {tuple(x.shape)}")
        return self.backbone(x.transpose(1, 2))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(self.features(x))


def _register(arch: str, description: str) -> None:
    def build(heads: dict[str, int], in_channels: int, *, drop_path: float = 0.0) -> nn.Module:
        return TorchvisionVideo(arch, heads, in_channels, drop_path=drop_path)

    register_model(arch, family="torchvision", description=description)(build)


_register("r3d_18", "ResNet-18 with 3D convolutions (Tran et al. 2018), torchvision")
_register("mc3_18", "ResNet-18, 3D convolutions in the first stages then 2D (mixed convolution), torchvision")
_register("r2plus1d_18", "ResNet-18 with (2+1)D factorised convolutions, torchvision")
_register("s3d", "S3D: separable 3D Inception (Xie et al. 2018), torchvision")
_register("mvit_v2_s", "MViTv2-S multiscale vision transformer (Li et al. 2022), torchvision; reads 16x224 clips only")
