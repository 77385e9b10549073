"""`egodistill synth OUT`: build the seeded synthetic egocentric dataset (see docs/synthetic.md)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from pathlib import Path

import yaml

ORDER = 15


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like HxW (e.g. 64x64), got {text!r}") from None
    return h, w


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="build the synthetic multimodal egocentric dataset (EPIC-100 formats)",
        description=(
            "Render a seeded synthetic egocentric dataset (camera over a cluttered counter, a hand "
            "moving an object; verb = motion and sound, noun = appearance) and write it through the "
            "prepare code: EPIC-100 annotation CSVs, rgb.h5, flow.h5 (OpenCV from the RGB), audio.h5, "
            "layout.h5, data.yaml (config fragment) and synth.json. The folder is built in OUT.tmp and "
            "renamed when complete; a failed build removes OUT.tmp."
        ),
    )
    p.add_argument("out", type=Path, help="output folder (must not exist unless --force)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--videos", type=int, help="number of videos")
    p.add_argument("--participants", type=int, help="number of participants (the last is unseen, validation only)")
    p.add_argument("--unlabelled", type=int, metavar="N",
                   help="N more videos of the seen participants whose segments are written without labels "
                        "(annotations/EPIC_100_unlabelled.csv, data.files.unlabelled), for distill.unlabelled")
    p.add_argument("--segments", type=int, help="action segments per video")
    p.add_argument("--frames", type=int, help="mean frames per segment")
    p.add_argument("--size", type=_size, help="frame size HxW, e.g. 64x64")
    p.add_argument("--verbs", type=int, help="number of verb classes")
    p.add_argument("--nouns", type=int, help="number of noun classes")
    p.add_argument("--tiny", action="store_true", help="the tiny settings used by tests (a few seconds)")
    p.add_argument(
        "--set", metavar="KEY=VALUE", action="append", default=[],
        help="set any generator parameter, e.g. --set noise_std=12 --set label_noise=0.05 (repeatable)",
    )
    p.add_argument("--workers", type=int, default=1, help="processes for rendering and packing")
    p.add_argument("--force", action="store_true",
                   help="replace OUT if it holds a synth dataset and nothing else (the old one is deleted only once "
                        "the new one is built)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace):
    """Return the SynthConfig for parsed arguments: --tiny base, then flags, then --set values."""
    from egodistill.synth import SynthConfig

    cfg = SynthConfig.tiny() if args.tiny else SynthConfig()
    flags = {
        "seed": args.seed, "num_videos": args.videos, "num_participants": args.participants,
        "segments_per_video": args.segments, "frames_per_segment": args.frames, "num_verbs": args.verbs,
        "num_nouns": args.nouns, "num_unlabelled": args.unlabelled,
    }
    for key, value in flags.items():
        if value is not None:
            setattr(cfg, key, value)
    if args.size is not None:
        cfg.height, cfg.width = args.size
    hints = typing.get_type_hints(type(cfg))
    names = [f.name for f in dataclasses.fields(cfg)]
    for item in args.set:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key not in names:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE with KEY one of: {', '.join(names)}")
        value = yaml.safe_load(text)
        tp = hints[key]
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if typing.get_origin(tp) is tuple and isinstance(value, list):
            value = tuple(value)
        expected = typing.get_origin(tp) or tp
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ValueError(f"--set {item!r}: '{key}' must be {getattr(expected, '__name__', expected)}, got {value!r}")
        setattr(cfg, key, value)
    return cfg


def run(args: argparse.Namespace) -> int:
    from egodistill.synth import generate

    cfg = build_config(args)
    try:
        summary = generate(args.out, cfg, workers=args.workers, progress=not args.quiet, overwrite=args.force)
    except FileExistsError as e:  # a user error: the CLI prints ValueErrors as one line
        raise ValueError(str(e)) from None
    keys = ("videos", "frames", "segments", "train_segments", "validation_segments", "unlabelled_segments")
    short = {k: summary[k] for k in keys if summary.get(k) or not k.startswith("unlabelled")}
    print(f"synth: wrote {Path(args.out).resolve()} {json.dumps(short)} in {summary['seconds']['total_s']:.1f} s")
    print(f"synth: use it with: egodistill train <config> and the data section of {Path(args.out) / 'data.yaml'}")
    return 0
