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
    import torch

    from egodistill.config import load_config
    from egodistill.data.modalities import get_modality
    from egodistill.engine.inputs import example_input
    from egodistill.models import build_model, model_cost
    from egodistill.models.cost import count_flops, count_params

    if args.list:
        return list_architectures()
    if not args.config:
        raise ValueError("egodistill info needs a CONFIG (or --list for the registered architectures)")
    cfg = load_config(args.config, args.overrides)
    heads = args.heads or cfg.model.heads or DEFAULT_HEADS.get(cfg.data.reader)
    if not heads:
        raise ValueError(f"{args.config}: no heads in model.heads and none known for reader '{cfg.data.reader}'; pass --heads")
    frames = args.frames or max(1, cfg.data.num_frames // max(1, cfg.model.frame_step))
    size = args.size or cfg.data.size
    # Weights do not change the cost: skip `model.pretrained` (the file may not be on this machine).
    cfg.model.pretrained = ""
    channels = get_modality(cfg.model.modality).channels(cfg)
    model = build_model(cfg.model, heads, channels)
    x = example_input(cfg, frames, size, args.batch)
    if args.no_timing:
        cost = {"params": count_params(model), "gflops": count_flops(model, x) / args.batch / 1e9}
    else:
        cost = model_cost(model, x, min_seconds=args.seconds)
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
            (f"forward clips/s (batch {args.batch})", f"{cost['fwd_clips_s']:.2f}"),
            (f"fwd+bwd clips/s (batch {args.batch})", f"{cost['fwdbwd_clips_s']:.2f}"),
            ("threads", str(torch.get_num_threads())),
        ]
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
