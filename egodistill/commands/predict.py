"""`egodistill predict VIDEO... --run RUN | --model FILE`: top classes of video files, or their timelines.

Parses the arguments, calls `egodistill.pipelines.predict` and prints the records.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from egodistill.pipelines.predict import predict_files, predict_timelines

ORDER = 60


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds (a number), got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="predict the actions in video files with a trained RGB run or an exported student",
        description=(
            "Decode each video file with PyAV and print the top classes of every head with their probabilities "
            "(EPIC: verbs, nouns and verb-noun actions). Without --window, a video is one clip: the run's test "
            "views (data.test_clips x data.test_crops over the whole video, at the file's frame rate), logits "
            "averaged over the views. With --window SECONDS, the video is streamed (memory bounded by the window, "
            "not the file) and predicted window by window, every --hop seconds, each window viewed as a clip; the "
            "output is a timeline (top-k per window) with merged action segments. Class names come from the run "
            "folder's info.json or the exported file's sidecar, so no annotation files are needed."
        ),
    )
    p.add_argument("videos", nargs="+", help="video files (any format FFmpeg reads), or folders: their video files")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run folder of an RGB model (train or distill)")
    src.add_argument("--model", help="an exported student (egodistill export), its .json sidecar beside it; "
                                     "ONNX files run with ONNX Runtime")
    p.add_argument("--window", type=_seconds, help="stream the video in windows of this many seconds (a timeline)")
    p.add_argument("--hop", type=_seconds, help="seconds between window starts (default: half the window)")
    p.add_argument("--top", type=int, default=5, help="classes per head (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--json-out", metavar="FILE", help="with --window: write the timelines as JSON, kept valid "
                                                      "while streaming")
    p.add_argument("--csv", metavar="FILE", help="with --window: write one CSV row per window ('-': print it)")
    p.add_argument("--plot", metavar="FILE.png", help="with --window: a strip chart of the top verb and noun over "
                                                      "time (several videos: FILE_<video>.png)")
    p.add_argument("--batch-size", type=int, default=4, help="videos (or windows) per forward pass (default 4)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--weights", choices=["best", "last"], default="best", help="which weights of the run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar while streaming")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from egodistill.engine.predict import format_prediction

    timeline_only = [flag for flag, value in (("--hop", args.hop), ("--json-out", args.json_out),
                                              ("--csv", args.csv), ("--plot", args.plot)) if value]
    if timeline_only and args.window is None:
        raise ValueError(f"{', '.join(timeline_only)} go with a timeline: add --window SECONDS")
    source = dict(run=args.run, model=args.model, device=args.device, weights=args.weights, top=args.top,
                  batch_size=args.batch_size)
    if args.window is None:
        results = predict_files(args.videos, **source)
        if args.json:
            print(json.dumps(results, indent=1, allow_nan=False))  # standard JSON only
        else:
            print("\n\n".join(format_prediction(r) for r in results))
        for r in results:
            if r.get("warning"):
                print(f"egodistill predict: warning: {r['video']}: {r['warning']}", file=sys.stderr)
        return 0
    return _timelines(args, source)


def _timelines(args: argparse.Namespace, source: dict[str, Any]) -> int:
    """Run `predict_timelines` for `--window` and print its output; returns the exit code."""
    to_stdout = args.json or args.csv == "-"
    csv_file = None if args.csv == "-" else args.csv
    try:
        records = predict_timelines(args.videos, window=args.window, hop=args.hop, json_out=args.json_out,
                                    csv_out=csv_file, plot=args.plot, echo=None if to_stdout else print,
                                    progress=not args.no_progress and sys.stderr.isatty(), **source)
    except KeyboardInterrupt:
        done = [p for p in (args.json_out, csv_file, args.plot) if p]
        print(f"egodistill predict: interrupted; {', '.join(map(str, done)) or 'the output'} "
              f"hold{'s' if len(done) == 1 else ''} the windows predicted so far", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(records, indent=1, allow_nan=False))
    elif args.csv == "-":
        import csv

        from egodistill.engine.timeline import timeline_rows

        header, rows = timeline_rows(records, args.top)
        writer = csv.writer(sys.stdout)
        writer.writerow(header)
        writer.writerows(rows)
    for r in records if to_stdout else []:  # text output shows them in place
        for w in r["warnings"]:
            print(f"egodistill predict: warning: {r['video']}: {w}", file=sys.stderr)
    return 0
