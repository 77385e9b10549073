"""`egodistill prepare {frames,flow-frames,video,audio,flow,layout,verify}`: build and check the HDF5 stores.

Every tool writes `<out>.tmp` and renames it to `<out>` when all videos are done (a failure
leaves the previous `<out>` intact), skips videos already complete in `<out>` (so an
interrupted run resumes), shows a progress bar and prints a one-line summary; --dry-run writes
nothing and reports what a run would write, how long it would take and whether the disk has room.
"""
from __future__ import annotations

import argparse
import errno
import functools
import sys
from pathlib import Path

ORDER = 10


def _number(kind: type, low: float, *, above: bool = False, high: float | None = None):
    """Return an argparse type: a finite `kind` (int or float) >= `low` (> `low` with `above`),
    <= `high` when given; anything else is a usage error naming the option."""
    import math

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if not math.isfinite(value) or value < low or (above and value == low) or (high is not None and value > high):
            bound = f"> {low:g}" if above else f">= {low:g}"
            raise argparse.ArgumentTypeError(f"must be {bound}{f' and <= {high:g}' if high is not None else ''}, "
                                             f"got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


_COUNT = _number(int, 1)  # workers, strides, boxes, sample rates
_RATE = _number(float, 0, above=True)  # frame rates, flow bounds


def _common(p: argparse.ArgumentParser, workers: bool = True) -> None:
    if workers:
        p.add_argument("--workers", type=_COUNT, default=1, help="worker processes (default 1); the parent writes")
    p.add_argument("--overwrite", action="store_true",
                   help="start from an empty store instead of resuming / adding to an existing one")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true",
                   help="write nothing: count videos and frames, estimate the output size and the time from a "
                        "sample (the shortest video), check the free disk space (exit 1 if short)")


def _fps_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fps", type=_RATE, default=60.0, help="RGB frame rate stored for every video (default 60)")
    p.add_argument("--video-info", type=Path,
                   help="EPIC_100_video_info.csv: per-video frame rates (overrides --fps)")
    p.add_argument("--on-gap", choices=("error", "fill"), default="error",
                   help="missing frame numbers: fail (default) or repeat the previous frame and report it")
    p.add_argument("--verify", action="store_true", help="decode every JPEG (default: check markers only)")
    p.add_argument("--videos", nargs="+", metavar="ID", help="only these video ids")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare", help="build rgb/flow/audio/layout HDF5 stores from frames, videos, audio or boxes",
        description=__doc__.split("\n\n", 1)[1].strip() + " Layouts: docs/stores.md.")
    sub = parser.add_subparsers(dest="tool", metavar="TOOL")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])  # `egodistill prepare` alone

    p = sub.add_parser("frames", help="EPIC-style frame folders or <video>.tar archives -> rgb.h5",
                       description="Pack FRAMES_DIR/<video_id>/frame_0000000001.jpg ... (or EPIC's archives "
                                   "FRAMES_DIR/<video_id>.tar, read directly, never unpacked to disk) into rgb.h5, "
                                   "keeping the files' frame numbers and JPEG bytes.")
    p.add_argument("frames_dir", type=Path, help="folder of <video_id>/ folders of JPEG frames and/or <video_id>.tar")
    p.add_argument("out", type=Path, help="output rgb.h5")
    _fps_arg(p)
    _common(p)
    p.set_defaults(func=run_frames)

    p = sub.add_parser("flow-frames", help="EPIC flow folders (u/<video>/, v/<video>/) or archives -> flow.h5",
                       description="Pack EPIC's TV-L1 flow JPEGs (FLOW_DIR/u/<video_id>/frame_*.jpg and "
                                   "FLOW_DIR/v/<video_id>/..., or FLOW_DIR/<video_id>.tar with ./u/ and ./v/ "
                                   "members, read directly) into flow.h5.")
    p.add_argument("flow_dir", type=Path, help="folder with u/ and v/ (or <video_id>/u, <video_id>/v, or <video_id>.tar)")
    p.add_argument("out", type=Path, help="output flow.h5")
    p.add_argument("--stride", type=_COUNT, default=2, help="RGB frames per flow frame (EPIC: 2)")
    p.add_argument("--bound", type=_RATE, default=20.0, help="flow bound the JPEGs were quantised with (EPIC: 20)")
    _fps_arg(p)
    _common(p)
    p.set_defaults(func=run_flow_frames)

    p = sub.add_parser("video", help="video files -> rgb.h5 (+ audio.h5)",
                       description="Decode video files (mp4/webm/mkv/avi/...) with PyAV into JPEG frames in rgb.h5 "
                                   "and mono audio in audio.h5. The video id is the file stem.")
    p.add_argument("inputs", nargs="+", type=Path, help="video files or folders of them")
    p.add_argument("--rgb", type=Path, required=True, help="output rgb.h5")
    p.add_argument("--audio", type=Path, help="output audio.h5 (required unless --no-audio)")
    p.add_argument("--no-audio", action="store_true", help="frames only")
    p.add_argument("--short-side", type=_number(int, 0), default=256, help="resize so the short side is this (0: keep; default 256)")
    p.add_argument("--quality", type=_number(int, 1, high=100), default=90, help="JPEG quality 1..100 (default 90)")
    p.add_argument("--fps", type=_RATE, help="resample frames to this rate (default: the video's)")
    p.add_argument("--sample-rate", type=_COUNT, default=24000, help="audio sample rate in Hz (default 24000)")
    p.add_argument("--allow-silent", action="store_true", help="store silence for videos without audio instead of failing")
    p.add_argument("--allow-truncated", action="store_true",
                   help="pack the frames that decode from a file cut short (fewer frames than its header "
                        "announces) and warn, instead of failing")
    _common(p)
    p.set_defaults(func=run_video)

    p = sub.add_parser("audio", help="audio files (wav, ...) -> audio.h5",
                       description="Decode audio (or video) files with PyAV into mono float32 audio.h5; "
                                   "the video id is the file stem.")
    p.add_argument("inputs", nargs="+", type=Path, help="audio files or folders of them")
    p.add_argument("out", type=Path, help="output audio.h5")
    p.add_argument("--sample-rate", type=_COUNT, default=24000, help="sample rate in Hz (default 24000)")
    _common(p)
    p.set_defaults(func=run_audio)

    p = sub.add_parser("flow", help="rgb.h5 -> flow.h5 with OpenCV (TV-L1 if available, else DIS)",
                       description="Compute optical flow between RGB frames f and f+STRIDE, quantise it like EPIC "
                                   "(clip to +-BOUND, 8 bit, 128 = still) and store u and v as grey JPEGs.")
    p.add_argument("rgb", type=Path, help="input rgb.h5")
    p.add_argument("out", type=Path, help="output flow.h5")
    p.add_argument("--stride", type=_COUNT, default=2, help="RGB frames per flow frame (default 2, as EPIC)")
    p.add_argument("--bound", type=_RATE, default=20.0, help="flow bound in pixels (default 20, as EPIC)")
    p.add_argument("--method", choices=("auto", "tvl1", "dis", "farneback"), default="auto",
                   help="auto: tvl1 when cv2.optflow exists, else dis")
    p.add_argument("--quality", type=_number(int, 1, high=100), default=95, help="JPEG quality of the u/v images (default 95)")
    p.add_argument("--videos", nargs="+", metavar="ID", help="only these video ids")
    _common(p)
    p.set_defaults(func=run_flow)

    p = sub.add_parser("layout", help="Something-Else boxes or hand-object detections -> layout.h5",
                       description="Convert Something-Else annotations.json or a hand-object detections JSON "
                                   "(docs/stores.md) into per-frame padded boxes in layout.h5.")
    p.add_argument("source", type=Path, help="annotations.json / detections JSON")
    p.add_argument("out", type=Path, help="output layout.h5")
    p.add_argument("--format", choices=("something_else", "hand_object"), required=True, help="input format")
    sizes = p.add_mutually_exclusive_group()
    sizes.add_argument("--sizes", type=Path, help="Something-Else: JSON {video_id: [width, height]} (else the largest box extent)")
    sizes.add_argument("--sizes-from", type=Path, metavar="RGB_H5",
                       help="Something-Else: take each video's frame size from this rgb.h5 (e.g. from `prepare video`)")
    p.add_argument("--max-boxes", type=_COUNT, default=14, help="boxes per frame (default 14)")
    p.add_argument("--hand-threshold", type=float, default=0.0, help="hand_object: drop hands scoring below")
    p.add_argument("--object-threshold", type=float, default=0.0, help="hand_object: drop objects scoring below")
    p.add_argument("--videos", nargs="+", metavar="ID", help="only these video ids")
    _common(p, workers=False)
    p.set_defaults(func=run_layout)

    p = sub.add_parser("verify", help="check a store: videos present, frames cover the annotations, JPEGs decode",
                       description="Check STORE (rgb.h5, flow.h5, audio.h5 or layout.h5): with --annotations, every "
                                   "annotated video is in it and its frames (flow: frames / stride; audio: samples) "
                                   "cover every segment; a sample of each video's JPEGs decodes. Prints a report; "
                                   "exit 1 when a problem is found.")
    p.add_argument("store", type=Path, help="the store to check")
    p.add_argument("--annotations", type=Path, nargs="+", metavar="CSV",
                   help="EPIC-style annotation CSVs (video_id, start_frame, stop_frame columns)")
    p.add_argument("--sample", type=_COUNT, default=8, help="JPEGs decoded per video (default 8: first, last, spread)")
    p.add_argument("--max-problems", type=_COUNT, default=20, help="problems listed (default 20; all are counted)")
    p.set_defaults(func=run_verify)


def _report(summary) -> int:
    print(summary.line())
    if not getattr(summary, "ok", True):
        raise OSError(f"{summary.command}: not enough free disk space for {summary.out} "
                      f"(needs ~{summary.need / 1e9:,.2f} GB, {summary.free / 1e9:,.2f} GB free)")
    for w in summary.warnings[:20]:
        print(f"  warning: {w}", file=sys.stderr)
    if len(summary.warnings) > 20:
        print(f"  ... and {len(summary.warnings) - 20} more warning(s)", file=sys.stderr)
    return 0


def _fps(args):
    if args.video_info is not None:
        from egodistill.data.prepare.frames import read_video_info

        return read_video_info(args.video_info)
    return args.fps


def keeps_partial_store(run):
    """Wrap a tool's `run_*` so that a full disk's error says what is kept and how to go on: the
    store writers keep `<out>.tmp` on purpose, and the same command resumes it."""

    @functools.wraps(run)
    def wrapped(args) -> int:
        try:
            return run(args)
        except OSError as e:
            if e.errno != errno.ENOSPC or not str(e.filename or "").endswith(".tmp"):
                raise
            raise OSError(e.errno, f"{e.strerror} (what was packed so far is kept in this file: free some space and "
                                   f"run the same command again to resume)", e.filename) from None

    return wrapped


@keeps_partial_store
def run_frames(args) -> int:
    from egodistill.data.prepare.frames import prepare_frames

    return _report(prepare_frames(args.frames_dir, args.out, workers=args.workers, video_ids=args.videos,
                                  fps=_fps(args), on_gap=args.on_gap, verify=args.verify,
                                  resume=not args.overwrite, show_progress=not args.quiet, dry_run=args.dry_run))


@keeps_partial_store
def run_flow_frames(args) -> int:
    from egodistill.data.prepare.frames import prepare_flow_frames

    return _report(prepare_flow_frames(args.flow_dir, args.out, stride=args.stride, bound=args.bound,
                                       workers=args.workers, video_ids=args.videos, fps=_fps(args),
                                       on_gap=args.on_gap, verify=args.verify, resume=not args.overwrite,
                                       show_progress=not args.quiet, dry_run=args.dry_run))


@keeps_partial_store
def run_video(args) -> int:
    from egodistill.data.prepare.video import VIDEO_SUFFIXES, expand_inputs, prepare_video

    if args.audio is None and not args.no_audio:
        raise ValueError("give --audio OUT.h5 for the audio store, or --no-audio for frames only")
    paths = expand_inputs(args.inputs, VIDEO_SUFFIXES)
    return _report(prepare_video(paths, args.rgb, None if args.no_audio else args.audio,
                                 short_side=args.short_side, quality=args.quality, fps=args.fps,
                                 sample_rate=args.sample_rate, allow_silent=args.allow_silent,
                                 allow_truncated=args.allow_truncated,
                                 workers=args.workers, resume=not args.overwrite, show_progress=not args.quiet,
                                 dry_run=args.dry_run))


@keeps_partial_store
def run_audio(args) -> int:
    from egodistill.data.prepare.video import VIDEO_SUFFIXES, expand_inputs, prepare_audio

    suffixes = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac", ".opus") + VIDEO_SUFFIXES
    paths = expand_inputs(args.inputs, suffixes)
    return _report(prepare_audio(paths, args.out, sample_rate=args.sample_rate, workers=args.workers,
                                 resume=not args.overwrite, show_progress=not args.quiet, dry_run=args.dry_run))


@keeps_partial_store
def run_flow(args) -> int:
    from egodistill.data.prepare.flow import prepare_flow

    return _report(prepare_flow(args.rgb, args.out, stride=args.stride, bound=args.bound, method=args.method,
                                workers=args.workers, quality=args.quality, video_ids=args.videos,
                                resume=not args.overwrite, show_progress=not args.quiet, dry_run=args.dry_run))


@keeps_partial_store
def run_layout(args) -> int:
    from egodistill.data.prepare.layout import StoreFrameSizes, prepare_layout

    sizes = StoreFrameSizes(args.sizes_from) if args.sizes_from is not None else args.sizes
    return _report(prepare_layout(args.source, args.out, format=args.format, sizes=sizes,
                                  max_boxes=args.max_boxes, hand_threshold=args.hand_threshold,
                                  object_threshold=args.object_threshold, video_ids=args.videos,
                                  resume=not args.overwrite, show_progress=not args.quiet, dry_run=args.dry_run))


def run_verify(args) -> int:
    from egodistill.data.prepare.verify import verify_store

    report = verify_store(args.store, annotations=args.annotations, sample=args.sample)
    print(report.text(args.max_problems))
    return 0 if report.ok else 1
