"""What a model costs: parameters, GFLOPs per view and measured clips/s (`egodistill info`)."""
from __future__ import annotations

import dataclasses

from egodistill.config import Config

# Heads of each dataset family, used when the config names none and none are given.
DEFAULT_HEADS = {"epic100": {"verb": 97, "noun": 300}, "ssv2": {"action": 174}, "something_else": {"action": 174}}


def describe_model(cfg: Config, *, heads: dict[str, int] | None = None, frames: int | None = None,
                   size: int | None = None, batch: int = 1, seconds: float = 1.0, timing: bool = True,
                   where: str = "the config") -> list[tuple[str, str]]:
    """Build `cfg.model` (without its pretrained weights: they do not change the cost) and return
    (label, value) rows: model, heads, view shape, parameters, GFLOPs per view and, with
    `timing`, forward and forward+backward clips/s on `batch` clips (each timed >= `seconds`).

    `heads` default to model.heads, else those of the dataset family (`DEFAULT_HEADS`); `frames`
    to data.num_frames / model.frame_step; `size` to data.size. `where` names the config in errors."""
    import torch

    from egodistill.data.modalities import get_modality
    from egodistill.engine.inputs import example_input
    from egodistill.models import build_model, model_cost
    from egodistill.models.cost import count_flops, count_params

    heads = heads or cfg.model.heads or DEFAULT_HEADS.get(cfg.data.reader)
    if not heads:
        raise ValueError(f"{where}: no heads in model.heads and none known for reader '{cfg.data.reader}'; pass --heads")
    frames = frames or max(1, cfg.data.num_frames // max(1, cfg.model.frame_step))
    size = size or cfg.data.size
    # Weights do not change the cost: skip `model.pretrained` (the file may not be on this machine).
    model = build_model(dataclasses.replace(cfg.model, pretrained=""), heads, get_modality(cfg.model.modality).channels(cfg))
    x = example_input(cfg, frames, size, batch)
    if timing:
        cost = model_cost(model, x, min_seconds=seconds)
    else:
        cost = {"params": count_params(model), "gflops": count_flops(model, x) / batch / 1e9}
    view = "x".join(str(n) for n in x.shape[1:]) if isinstance(x, torch.Tensor) else f"{frames} frames of boxes"
    rows = [
        ("model", f"{cfg.model.arch} ({cfg.model.modality})"),
        ("heads", ", ".join(f"{k} {v}" for k, v in heads.items())),
        ("view", view),
        ("parameters", f"{cost['params']:,} ({cost['params'] / 1e6:.2f} M)"),
        ("GFLOPs / view", f"{cost['gflops']:.3f}"),
    ]
    if "fwd_clips_s" in cost:
        rows += [
            (f"forward clips/s (batch {batch})", f"{cost['fwd_clips_s']:.2f}"),
            (f"fwd+bwd clips/s (batch {batch})", f"{cost['fwdbwd_clips_s']:.2f}"),
            ("threads", str(torch.get_num_threads())),
        ]
    return rows
