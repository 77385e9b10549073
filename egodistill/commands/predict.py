"""`egodistill predict VIDEO... --run RUN`: top-5 verbs / nouns / actions of video files."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ORDER = 60


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="predict the actions in video files with a trained RGB run",
        description=(
            "Decode each video file with PyAV, take the run's test views (data.test_clips x data.test_crops over "
            "the whole video, at the file's frame rate), average the logits over the views and print the top "
            "classes of every head with their probabilities (EPIC: verbs, nouns and verb-noun actions). Class "
            "names come from the run folder's info.json, so no annotation files are needed."
        ),
    )
    p.add_argument("videos", nargs="+", help="video files (any format FFmpeg reads), or folders: their video files")
    p.add_argument("--run", required=True, help="run folder of an RGB model (train or distill)")
    p.add_argument("--top", type=int, default=5, help="classes per head (default 5)")
    p.add_argument("--json", action="store_true", help="print one JSON list instead of text")
    p.add_argument("--batch-size", type=int, default=4, help="videos per forward pass")
    p.add_argument("--weights", choices=["best", "last"], default="best", help="which weights of the run")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(func=main)


def video_files(inputs: list[str]) -> list[Path]:
    """Return `inputs` with each folder replaced by its video files (sorted by name)."""
    from egodistill.data.prepare.video import VIDEO_SUFFIXES

    files: list[Path] = []
    for p in map(Path, inputs):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"{p} is a folder with no video files in it ({', '.join(VIDEO_SUFFIXES)}); "
                                        f"give video files or a folder of them")
            files.extend(found)
        else:
            files.append(p)
    return files


def main(args: argparse.Namespace) -> int:
    import torch

    from egodistill.engine.checkpoint import LAST_DIR, WEIGHTS_FILE, load_run
    from egodistill.engine.predict import format_prediction, predict_videos

    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    videos = video_files(args.videos)
    weights = Path(args.run) / LAST_DIR / WEIGHTS_FILE if args.weights == "last" else None
    cfg, model, info = load_run(args.run, weights=weights)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    results = predict_videos(videos, cfg, model, info, k=args.top, batch_size=max(1, args.batch_size),
                             device=device)
    if args.json:
        print(json.dumps(results, indent=1, allow_nan=False))  # standard JSON only
    else:
        print("\n\n".join(format_prediction(r) for r in results))
    return 0
