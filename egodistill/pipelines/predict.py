"""Predicting the actions in video files with a trained RGB run or an exported student.

`predict_files`: each video is one clip (the run's test views over the whole video);
`predict_timelines`: each video is streamed and predicted window by window. Class names come
from the run folder's info.json or the exported file's sidecar, so no annotation files are
needed. `egodistill predict` parses its arguments, calls one of them and prints the records.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the command line imports this module; torch loads only when a prediction starts
    from pathlib import Path

    from egodistill.engine.predict import Predictor

PathLike = str | os.PathLike


def predict_files(videos: Sequence[PathLike], *, run: PathLike | None = None, model: PathLike | None = None,
                  device: str = "auto", weights: str = "best", top: int = 5,
                  batch_size: int = 4) -> list[dict[str, Any]]:
    """Return one record per video file (folders: their video files, by name), each the `top`
    classes of every head over the run's test views of the whole video
    (`engine.predict.predict_clips`'s records; a record may carry a "warning").

    `run`: a run folder (`weights` best or last), or `model`: an exported file with its sidecar;
    `device`: auto, cpu, cuda or cuda:N; `batch_size`: videos per forward pass."""
    from egodistill.engine.predict import predict_clips

    paths, predictor = _load(videos, run=run, model=model, device=device, weights=weights, top=top,
                             batch_size=batch_size)
    return predict_clips(paths, predictor, k=top, batch_size=batch_size)


def predict_timelines(videos: Sequence[PathLike], *, window: float, hop: float | None = None,
                      run: PathLike | None = None, model: PathLike | None = None, device: str = "auto",
                      weights: str = "best", top: int = 5, batch_size: int = 4, json_out: PathLike | None = None,
                      csv_out: PathLike | None = None, plot: PathLike | None = None,
                      echo: Callable[[str], None] | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """Stream each video (memory bounded by the window) and return one timeline record per video
    (`engine.timeline.stream_videos`'s records: top-`top` classes per window of `window`
    seconds, `hop` seconds apart (default half the window), and merged action segments).

    `json_out` / `csv_out` are kept valid while streaming; `plot`: a strip chart per video;
    `echo(line)` receives the text output as it is produced. On Ctrl-C the outputs hold the
    windows predicted so far and KeyboardInterrupt propagates. The other arguments are
    `predict_files`'."""
    from egodistill.engine.timeline import stream_videos

    paths, predictor = _load(videos, run=run, model=model, device=device, weights=weights, top=top,
                             batch_size=batch_size)
    return stream_videos(paths, predictor, window=window, hop=hop if hop is not None else window / 2, k=top,
                         batch_size=batch_size, json_out=json_out, csv_out=csv_out, plot=plot, echo=echo,
                         progress=progress)


def _load(videos: Sequence[PathLike], *, run: PathLike | None, model: PathLike | None, device: str, weights: str,
          top: int, batch_size: int) -> tuple[list[Path], Predictor]:
    """Check the options, then return the video files (folders expanded) and the predictor."""
    from egodistill.engine.predict import load_predictor
    from egodistill.engine.stream import video_files

    if top < 1:
        raise ValueError(f"--top must be at least 1, got {top}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    paths = video_files(videos)
    return paths, load_predictor(run=run, model=model, device=device, weights=weights)
