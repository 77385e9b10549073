"""`egodistill info CONFIG`: the model's parameters, GFLOPs per view and measured clips/s."""
from __future__ import annotations

import argparse

ORDER = 80

# Heads of each dataset family, used when the config names none and no --heads flag is given.
DEFAULT_HEADS = {"epic100": {"verb": 97, "noun": 300}, "ssv2": {"action": 174}, "something_else": {"action": 174}}


def _heads(text: str) -> dict[str, int]:
    out = {}
    for item in text.split(","):
        name, _, classes = item.partition("=")
        try:
            out[name.strip()] = int(classes)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--heads must look like verb=97,noun=300, got {text!r}") from None
    return out


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "info",
        help="print a model's parameters, GFLOPs per view and measured clips/s",
        description=(
            "Build the model of CONFIG (model.arch, model.preset; heads from model.heads or --heads; "
            "input channels by model.modality: rgb 3, flow data.flow_channels, audio 3) and print its "
            "parameters, GFLOPs per view (torch.utils.flop_counter: a multiply-add counts 2) and the "
            "forward and forward+backward clips/s measured on this machine. model.pretrained is not "
            "loaded (weights do not change the cost)."
        ),
    )
    p.add_argument("config", help="YAML config file")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. model.preset=swin_nano")
    p.add_argument("--frames", type=int, help="frames per view (default data.num_frames / model.frame_step)")
    p.add_argument("--size", type=int, help="crop size S (default data.size)")
    p.add_argument("--heads", type=_heads, help="heads and classes, e.g. verb=97,noun=300")
    p.add_argument("--batch", type=int, default=1, help="clips per measured step (default 1)")
    p.add_argument("--seconds", type=float, default=1.0, help="minimum seconds per timing (default 1)")
    p.add_argument("--no-timing", action="store_true", help="only parameters and GFLOPs")
    p.set_defaults(func=run)


def in_channels(cfg) -> int:
    """Return the input channels of `cfg.model.modality` (its loader's `channels`)."""
    from egodistill.data.modalities import get_modality

    return get_modality(cfg.model.modality).channels(cfg)


def example_input(cfg, frames: int, size: int, batch: int):
    """Return a random input for `cfg.model`: clips [batch, frames, C, size, size] for Swin, a
    layout dict with `data.max_boxes` boxes per frame for STLT."""
    import torch

    from egodistill.models.stlt import example_layout

    if cfg.model.arch == "stlt":
        return example_layout(batch, frames, cfg.data.max_boxes)
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, frames, in_channels(cfg), size, size, generator=g)


def run(args: argparse.Namespace) -> int:
    import torch

    from egodistill.config import load_config
    from egodistill.models import build_model, model_cost
    from egodistill.models.cost import count_flops, count_params

    cfg = load_config(args.config, args.overrides)
    heads = args.heads or cfg.model.heads or DEFAULT_HEADS.get(cfg.data.reader)
    if not heads:
        raise ValueError(f"{args.config}: no heads in model.heads and none known for reader '{cfg.data.reader}'; pass --heads")
    frames = args.frames or max(1, cfg.data.num_frames // max(1, cfg.model.frame_step))
    size = args.size or cfg.data.size
    # Weights do not change the cost: skip `model.pretrained` (the file may not be on this machine).
    cfg.model.pretrained = ""
    model = build_model(cfg.model, heads, in_channels(cfg))
    x = example_input(cfg, frames, size, args.batch)
    if args.no_timing:
        cost = {"params": count_params(model), "gflops": count_flops(model, x) / args.batch / 1e9}
    else:
        cost = model_cost(model, x, min_seconds=args.seconds)
    view = f"{frames} boxes-frames" if cfg.model.arch == "stlt" else f"{frames}x{in_channels(cfg)}x{size}x{size}"
    rows = [
        ("model", f"{cfg.model.arch} {cfg.model.preset} ({cfg.model.modality})"),
        ("heads", ", ".join(f"{k} {v}" for k, v in heads.items())),
        ("view", view),
        ("parameters", f"{cost['params']:,} ({cost['params'] / 1e6:.2f} M)"),
        ("GFLOPs / view", f"{cost['gflops']:.3f}"),
    ]
    if "fwd_clips_s" in cost:
        rows += [
            (f"forward clips/s (batch {args.batch})", f"{cost['fwd_clips_s']:.2f}"),
            (f"fwd+bwd clips/s (batch {args.batch})", f"{cost['fwdbwd_clips_s']:.2f}"),
            ("threads", str(torch.get_num_threads())),
        ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0
