"""`build_model(model_cfg, heads, in_channels)`: the registered architecture `model_cfg.arch`."""
from __future__ import annotations

import logging

from torch import nn

from egodistill.config import ModelConfig
from egodistill.models.registry import get_model_spec

log = logging.getLogger(__name__)


def build_model(model_cfg: ModelConfig, heads: dict[str, int], in_channels: int) -> nn.Module:
    """Return the registered model `model_cfg.arch` with one linear head per entry of `heads`.

    Clip models: forward(x [N, T, C=in_channels, H, W]) -> {head: [N, classes]}; layout models
    (STLT): forward(layout dict of [N, T, B, ...]) -> {head: [N, classes]} (in_channels unused).
    Drop-path comes from `model_cfg.drop_path`. When `model_cfg.pretrained` names a file, its
    weights (official Video Swin, the authors', torchvision's or ours) are loaded and the load
    report is logged.
    """
    spec = get_model_spec(model_cfg.arch)
    model = spec.build(heads, in_channels, drop_path=model_cfg.drop_path)
    if model_cfg.pretrained:
        from egodistill.models.checkpoints import load_official_checkpoint

        report = load_official_checkpoint(model, model_cfg.pretrained)
        log.info("%s", report)
        print(report)
    return model
