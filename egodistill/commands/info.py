"""`egodistill info CONFIG`: the model's parameters, GFLOPs per view and measured clips/s.

Parses the arguments, calls `egodistill.pipelines.info.describe_model` and prints its rows.
"""
from __future__ import annotations

import argparse

from egodistill.pipelines.info import describe_model

ORDER = 80


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
            "Build the model of CONFIG (model.arch, any registered architecture: --list; heads from model.heads or --heads; "
            "input channels by model.modality: rgb 3, flow data.flow_channels, audio 3) and print its "
            "parameters, GFLOPs per view (torch.utils.flop_counter: a multiply-add counts 2) and the "
            "forward and forward+backward clips/s measured on this machine. model.pretrained is not "
            "loaded (weights do not change the cost)."
        ),
    )
    p.add_argument("config", nargs="?", help="YAML config file")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. model.arch=swin_nano")
    p.add_argument("--list", action="store_true", help="list the registered architectures and exit")
    p.add_argument("--frames", type=int, help="frames per view (default data.num_frames / model.frame_step)")
    p.add_argument("--size", type=int, help="crop size S (default data.size)")
    p.add_argument("--heads", type=_heads, help="heads and classes, e.g. verb=97,noun=300")
    p.add_argument("--batch", type=int, default=1, help="clips per measured step (default 1)")
    p.add_argument("--seconds", type=float, default=1.0, help="minimum seconds per timing (default 1)")
    p.add_argument("--no-timing", action="store_true", help="only parameters and GFLOPs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from egodistill.config import load_config

    if args.list:
        return list_architectures()
    if not args.config:
        raise ValueError("egodistill info needs a CONFIG (or --list for the registered architectures)")
    cfg = load_config(args.config, args.overrides)
    rows = describe_model(cfg, heads=args.heads, frames=args.frames, size=args.size, batch=args.batch,
                          seconds=args.seconds, timing=not args.no_timing, where=args.config)
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


def list_architectures() -> int:
    """Print every registered architecture with its family and description."""
    from egodistill.models.registry import get_model_spec, list_models

    names = list_models()
    width = max(len(n) for n in names)
    for name in names:
        spec = get_model_spec(name)
        print(f"{name:<{width}}  {spec.family:<11}  {spec.description}")
    return 0
