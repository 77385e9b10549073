"""Streaming recognition on videos of any length: a timeline of windows and merged action segments.

`predict_timeline(path, predictor, window=W, hop=H)` decodes the file as a stream
(`engine.stream`), takes each window `[k*H, k*H + W)` seconds through the predictor's test views
(the `ClipSpec`: K clips x C crops of the window, as an evaluation sample is viewed), runs the
windows `batch_size` at a time and returns the timeline record:

    {"video", "fps", "duration", "rotation", "window", "hop", "complete", "warnings", "frames", "seconds",
     "windows":  [{"window", "start", "end", "frames", <head>: [{"class", "name", "prob"}, ...],
                   "action": [...] (EPIC)}, ...],
     "segments": [{"start", "end", "windows", "label", <head>: name, "confidence"}, ...]}

A segment is a run of consecutive windows with the same top action (EPIC: verb and noun;
otherwise the top class of every head); its confidence is the mean of the windows' top
probability, it ends where the next segment starts. `TimelineWriter` keeps JSON and CSV files
valid at every moment (each rewrite goes to a temporary file, then is renamed), so Ctrl-C
leaves what was already predicted; `plot_timeline` draws the strip chart.
"""
from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from egodistill.atomic import atomic_path, write_text
from egodistill.engine.predict import Predictor, check_finite, clip_views, top_classes
from egodistill.engine.stream import VideoReader, windows


def _round(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(float(x), digits)


def timeline_heads(record: dict[str, Any]) -> list[str]:
    """Return the per-window keys holding top-k lists (heads, then `action` when present)."""
    first = record["windows"][0] if record["windows"] else {}
    return [key for key, items in first.items() if isinstance(items, list)]


def merge_segments(windows_: list[dict[str, Any]], heads: list[str] | None = None) -> list[dict[str, Any]]:
    """Return the action segments of a timeline's windows (see the module docstring)."""
    segments: list[dict[str, Any]] = []
    for w in windows_:
        lists = {key: items for key, items in w.items() if isinstance(items, list)}
        names = [h for h in (heads or lists) if h in lists and h != "action"]
        if "action" in lists:
            label = lists["action"][0]["name"]
            conf = lists["action"][0]["prob"]
        else:
            label = " / ".join(lists[h][0]["name"] for h in names)
            conf = sum(lists[h][0]["prob"] for h in names) / max(1, len(names))
        if segments and segments[-1]["label"] == label:
            seg = segments[-1]
            seg["end"] = w["end"]
            seg["windows"] += 1
            seg["_sum"] += conf
        else:
            seg = {"start": w["start"], "end": w["end"], "windows": 1, "label": label,
                   **{h: lists[h][0]["name"] for h in names}, "_sum": conf}
            if segments:
                segments[-1]["end"] = min(segments[-1]["end"], w["start"])
            segments.append(seg)
    for seg in segments:
        seg["confidence"] = round(seg.pop("_sum") / seg["windows"], 6)
    return segments


class TimelinePrediction:
    """One video's streaming prediction; `record` holds the timeline as far as it has got."""

    def __init__(self, path: str | os.PathLike, predictor: Predictor, *, window: float, hop: float, k: int = 5,
                 batch_size: int = 8, short_side: int = 256):
        if not (window > 0 and hop > 0):
            raise ValueError(f"--window and --hop must be positive seconds, got window={window}, hop={hop}")
        self.predictor, self.k, self.batch_size = predictor, k, max(1, int(batch_size))
        self.window, self.hop = float(window), float(hop)
        self.reader = VideoReader(Path(path), short_side)
        self.record: dict[str, Any] = {
            "video": str(path), "fps": _round(self.reader.fps), "duration": _round(self.reader.duration),
            "rotation": 0, "window": self.window, "hop": self.hop, "complete": False, "warnings": [],
            "windows": [], "segments": [],
        }
        self.video_seconds = 0.0  # of video decoded and predicted so far
        self.wall_seconds = 0.0

    def run(self, on_batch: Callable[[dict[str, Any]], None] | None = None, progress: bool = False) -> dict[str, Any]:
        """Predict every window; call `on_batch(record)` after each batch; return the record."""
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=_round(self.reader.duration, 1), unit="s", desc=Path(self.record["video"]).name,
                       leave=False, bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} s [{elapsed}<{remaining}{postfix}]")
        t0 = time.perf_counter()
        pending: list[tuple[Any, torch.Tensor]] = []
        spec = self.predictor.spec

        def flush() -> None:
            if not pending:
                return
            logits = self.predictor(torch.stack([v for _, v in pending]))
            for i, (w, _) in enumerate(pending):
                row = {h: z[i] for h, z in logits.items()}
                check_finite(row, f"{self.record['video']} ({w.start:.2f}-{w.end:.2f} s)")
                self.record["windows"].append({"window": w.index, "start": _round(w.start), "end": _round(w.end),
                                               "frames": len(w.frames), **top_classes(row, spec.info, self.k)})
            self.video_seconds = pending[-1][0].end
            pending.clear()
            self.wall_seconds = time.perf_counter() - t0
            self.record["segments"] = merge_segments(self.record["windows"])
            if bar is not None:
                bar.n = min(self.video_seconds, bar.total or self.video_seconds)
                bar.set_postfix_str(f"{self.realtime_factor():.1f}x real time", refresh=True)
            if on_batch is not None:
                on_batch(self.record)

        try:
            for w in windows(self.reader, self.window, self.hop, self.reader.frame_seconds()):
                self.record["rotation"] = self.reader.rotation
                pending.append((w, clip_views(w.frames, spec.data)))
                if len(pending) >= self.batch_size:
                    flush()
            flush()
        finally:
            self.reader.close()
            if bar is not None:
                bar.close()
        if self.reader.warning:
            self.record["warnings"].append(self.reader.warning)
        self.record["complete"] = True
        self.record["frames"] = self.reader.decoded
        self.record["seconds"] = _round(self.wall_seconds, 2)
        if on_batch is not None:
            on_batch(self.record)
        return self.record

    def realtime_factor(self) -> float:
        """Seconds of video predicted per second of wall time (above 1: faster than real time)."""
        return self.video_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


def predict_timeline(path: str | os.PathLike, predictor: Predictor, *, window: float, hop: float, k: int = 5,
                     batch_size: int = 8, short_side: int = 256, progress: bool = False) -> dict[str, Any]:
    """Return the timeline record of one video (see the module docstring)."""
    return TimelinePrediction(path, predictor, window=window, hop=hop, k=k, batch_size=batch_size,
                              short_side=short_side).run(progress=progress)


# ---------------------------------------------------------------------------------------------
# Output: text, JSON, CSV, plot
# ---------------------------------------------------------------------------------------------


def clock(seconds: float) -> str:
    """Return `seconds` as H:MM:SS.s (or M:SS.s under an hour)."""
    seconds = max(0.0, float(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{int(h)}:{int(m):02d}:{s:04.1f}" if h >= 1 else f"{int(m)}:{s:04.1f}"


def timeline_header(record: dict[str, Any]) -> str:
    """Return a timeline's first text line: the video, its length and rate, the windows."""
    duration = f"{record['duration']:.1f} s" if record.get("duration") else "unknown length"
    return (f"{record['video']} ({duration}, {record.get('fps') or 0:.3g} fps; windows of {record['window']:g} s "
            f"every {record['hop']:g} s)")


def timeline_window_line(w: dict[str, Any]) -> str:
    """Return one window as a text line: its span, then the top class of every head."""
    parts = [f"{key} {items[0]['name']} {items[0]['prob']:.2f}" for key, items in w.items() if isinstance(items, list)]
    return f"  {clock(w['start'])}-{clock(w['end'])}  " + " | ".join(parts)


def timeline_footer(record: dict[str, Any]) -> str:
    """Return the text after a timeline's windows: warnings, interruption, the merged segments."""
    lines = [f"  warning: {w}" for w in record.get("warnings", [])]
    if not record.get("complete", True):
        lines.append(f"  interrupted after {len(record['windows'])} window(s): the timeline so far")
    lines.append(f"  segments ({len(record['segments'])}):")
    for s in record["segments"]:
        lines.append(f"  {clock(s['start'])}-{clock(s['end'])}  {s['label']}  (confidence {s['confidence']:.2f}, "
                     f"{s['windows']} window{'s' if s['windows'] != 1 else ''})")
    return "\n".join(lines)


def format_timeline(record: dict[str, Any]) -> str:
    """Return a timeline as text: a header, one line per window (top-1 of every head), the segments."""
    return "\n".join([timeline_header(record), *map(timeline_window_line, record["windows"]), timeline_footer(record)])


def timeline_rows(records: list[dict[str, Any]], k: int) -> tuple[list[str], list[list[Any]]]:
    """Return (CSV header, rows): one row per window of every video, the top-`k` of every head as
    `<head>_<rank>` and `<head>_<rank>_prob` columns, and the window's segment number."""
    keys: list[str] = []
    for r in records:
        for key in timeline_heads(r):
            if key not in keys:
                keys.append(key)
    header = ["video", "window", "start", "end", "frames", "segment"]
    for key in keys:
        for rank in range(1, k + 1):
            header += [f"{key}_{rank}", f"{key}_{rank}_prob"]
    rows = []
    for r in records:
        seg_of = _segment_index(r)
        for i, w in enumerate(r["windows"]):
            row: list[Any] = [r["video"], w["window"], w["start"], w["end"], w["frames"], seg_of[i]]
            for key in keys:
                items = w.get(key, [])
                for rank in range(k):
                    row += [items[rank]["name"], f"{items[rank]['prob']:.6f}"] if rank < len(items) else ["", ""]
            rows.append(row)
    return header, rows


def _segment_index(record: dict[str, Any]) -> list[int]:
    out: list[int] = []
    for s_i, seg in enumerate(record["segments"]):
        out += [s_i] * seg["windows"]
    return out + [len(record["segments"])] * (len(record["windows"]) - len(out))


class TimelineWriter:
    """Keeps `--json FILE` / `--csv FILE` outputs up to date for a list of video records.

    `update(records)` rewrites the files (atomically) at most every `every` seconds; `close`
    writes the final state. The records are the ones passed: completed videos and the one in
    progress, which a Ctrl-C leaves marked `"complete": false`."""

    def __init__(self, json_path: str | os.PathLike | None, csv_path: str | os.PathLike | None, k: int,
                 every: float = 2.0):
        self.json_path = Path(json_path) if json_path else None
        self.csv_path = Path(csv_path) if csv_path else None
        self.k, self.every, self._last = k, every, 0.0
        for p in (self.json_path, self.csv_path):
            if p is not None and p.is_dir():
                raise IsADirectoryError(f"{p} is a folder; give a file name for the output")

    def update(self, records: list[dict[str, Any]], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every:
            return
        self._last = now
        if self.json_path is not None:
            write_text(self.json_path, json.dumps(records, indent=1, allow_nan=False) + "\n")
        if self.csv_path is not None:
            header, rows = timeline_rows(records, self.k)
            buf = io.StringIO()
            writer = csv.writer(buf)
            writer.writerow(header)
            writer.writerows(rows)
            write_text(self.csv_path, buf.getvalue())

    def close(self, records: list[dict[str, Any]]) -> None:
        self.update(records, force=True)


def plot_timeline(record: dict[str, Any], path: str | os.PathLike, max_legend: int = 12) -> Path:
    """Draw a strip chart of a timeline: per head a band of the top class over time (colour =
    class, height = probability, the class named on each run) and write it as PNG atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heads = [h for h in timeline_heads(record) if h != "action"] or timeline_heads(record)
    if not record["windows"]:
        raise ValueError(f"{record['video']}: no window was predicted, so there is nothing to plot")
    span = max(w["end"] for w in record["windows"])
    fig, axes = plt.subplots(len(heads), 1, figsize=(12, 1.6 + 1.3 * len(heads)), sharex=True, squeeze=False)
    cmap = plt.get_cmap("tab20")
    hop = float(record["hop"])
    for ax, head in zip(axes[:, 0], heads):
        colours: dict[str, Any] = {}
        runs: list[list[Any]] = []  # [name, start, end]
        lefts, widths, heights, fills = [], [], [], []
        for w in record["windows"]:
            top = w[head][0]
            width = min(hop, w["end"] - w["start"])
            left = max(0.0, (w["start"] + w["end"]) / 2 - width / 2)
            lefts.append(left)
            widths.append(width)
            heights.append(top["prob"])
            fills.append(colours.setdefault(top["name"], cmap(len(colours) % 20)))
            if runs and runs[-1][0] == top["name"]:
                runs[-1][2] = left + width
            else:
                runs.append([top["name"], left, left + width])
        ax.bar(lefts, heights, width=widths, align="edge", color=fills, edgecolor="none")
        for name, a, b in runs:
            if b - a >= span / 60:
                ax.text((a + b) / 2, 1.02, name, ha="center", va="bottom", fontsize=7, clip_on=True)
        ax.set_ylim(0, 1.18)
        ax.set_yticks([0, 0.5, 1])
        ax.set_ylabel(f"{head}\nprobability")
        shown = list(colours.items())[:max_legend]
        ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c) for _, c in shown], labels=[n for n, _ in shown],
                  loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, frameon=False,
                  title=f"top {head}" + ("" if len(colours) <= max_legend else f" ({max_legend} of {len(colours)})"),
                  title_fontsize=7)
    axes[-1, 0].set_xlim(0, span)
    axes[-1, 0].set_xlabel("time (s)")
    ticks = axes[-1, 0].get_xticks()
    axes[-1, 0].set_xticks([t for t in ticks if 0 <= t <= span])
    axes[-1, 0].set_xticklabels([clock(t) for t in ticks if 0 <= t <= span])
    title = f"{Path(record['video']).name}: top class per window ({record['window']:g} s windows every {hop:g} s)"
    if not record.get("complete", True):
        title += ", interrupted"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, keep_suffix=True) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def plot_file(plot: str | os.PathLike, video: str | os.PathLike, several: bool) -> Path:
    """Return the plot file of `video`: `plot` itself, or `<plot stem>_<video stem>.png` for several videos."""
    plot = Path(plot)
    if not several:
        return plot
    return plot.with_name(f"{plot.stem}_{Path(video).stem}{plot.suffix or '.png'}")


def stream_videos(paths: list[str | os.PathLike], predictor: Predictor, *, window: float, hop: float, k: int = 5,
                  batch_size: int = 8, short_side: int = 256, json_out: str | os.PathLike | None = None,
                  csv_out: str | os.PathLike | None = None, plot: str | os.PathLike | None = None,
                  echo: Callable[[str], None] | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """Predict the timeline of each video in turn and return the records.

    `json_out` / `csv_out` files are kept valid throughout (see `TimelineWriter`); `plot`: a strip
    chart per video; `echo(line)` receives the text output as it is produced (header, each
    window, segments). On Ctrl-C (KeyboardInterrupt) or an error, the outputs are finalised with
    the windows predicted so far (the video in progress marked `"complete": false`), then the
    exception propagates."""
    if plot is not None and Path(plot).is_dir():
        raise IsADirectoryError(f"{plot} is a folder; give a PNG file name for --plot")
    writer = TimelineWriter(json_out, csv_out, k)
    records: list[dict[str, Any]] = []
    several = len(paths) > 1
    current: dict[str, Any] | None = None
    try:
        for path in paths:
            tp = TimelinePrediction(path, predictor, window=window, hop=hop, k=k, batch_size=batch_size,
                                    short_side=short_side)
            current = tp.record
            records.append(current)
            if echo:
                echo(timeline_header(current))
            shown = 0

            def on_batch(record: dict[str, Any]) -> None:
                nonlocal shown
                writer.update(records)
                if echo:
                    for w in record["windows"][shown:]:
                        echo(timeline_window_line(w))
                shown = len(record["windows"])

            tp.run(on_batch, progress=progress)
            if echo:
                echo(timeline_footer(current))
            if plot is not None:
                plot_timeline(current, plot_file(plot, path, several))
            current = None
    except BaseException:
        if current is not None and current["windows"]:
            current["segments"] = merge_segments(current["windows"])
            if echo:
                echo(timeline_footer(current))
            if plot is not None:
                plot_timeline(current, plot_file(plot, current["video"], several))
        writer.close(records)
        raise
    writer.close(records)
    return records
