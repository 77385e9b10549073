"""`build_model(model_cfg, heads, in_channels)`: a network from the config's arch and preset."""
from __future__ import annotations

import logging

from torch import nn

from egodistill.config import ModelConfig
from egodistill.models.stlt import STLT, STLT_PRESETS
from egodistill.models.swin import SWIN_PRESETS, VideoSwin

log = logging.getLogger(__name__)

# Every preset, with the arch it belongs to: {name: {"arch": "swin" | "stlt", **arguments}}.
PRESETS: dict[str, dict] = {
    **{name: {"arch": "swin", **spec} for name, spec in SWIN_PRESETS.items()},
    **{name: {"arch": "stlt", **spec} for name, spec in STLT_PRESETS.items()},
}


def build_model(model_cfg: ModelConfig, heads: dict[str, int], in_channels: int) -> nn.Module:
    """Return the model for `model_cfg` with one linear head per entry of `heads`.

    arch "swin": forward(x [N, T, C=in_channels, H, W]) -> {head: [N, classes]}.
    arch "stlt": forward(layout dict of [N, T, B, ...]) -> {head: [N, classes]} (in_channels unused).
    Drop-path (Swin) comes from `model_cfg.drop_path`. When `model_cfg.pretrained` names a file,
    its weights (official Video Swin, the authors' or ours) are loaded and the report is logged.
    """
    if model_cfg.preset not in PRESETS:
        raise ValueError(f"model.preset '{model_cfg.preset}' is not a preset; choose one of {sorted(PRESETS)}")
    spec = dict(PRESETS[model_cfg.preset])
    arch = spec.pop("arch")
    if arch != model_cfg.arch:
        choices = sorted(n for n, s in PRESETS.items() if s["arch"] == model_cfg.arch)
        raise ValueError(
            f"model.preset '{model_cfg.preset}' is an {arch} preset but model.arch is '{model_cfg.arch}'; "
            f"{model_cfg.arch} presets: {choices}"
        )
    if arch == "swin":
        model: nn.Module = VideoSwin(heads, in_channels, drop_path=model_cfg.drop_path, **spec)
    else:
        model = STLT(heads, **spec)
    if model_cfg.pretrained:
        from egodistill.models.checkpoints import load_official_checkpoint

        report = load_official_checkpoint(model, model_cfg.pretrained)
        log.info("%s", report)
        print(report)
    return model
