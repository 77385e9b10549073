"""PNG figures of a run: training curves, reliability diagrams, confusion matrices.

Matplotlib with the Agg backend (no display needed); each figure is written to a temporary
file and renamed into place.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from torch import Tensor  # noqa: E402

from egodistill.atomic import atomic_path  # noqa: E402


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def read_metrics_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Return the records of a `metrics.jsonl` file (one JSON object per line)."""
    records = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {i}: not JSON ({e})") from e
    return records


def plot_training_curves(records: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write training loss and learning rate against step, and held-out top-1 accuracies and
    ECE against epoch, to `path` (PNG); returns the path."""
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    if train:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="loss")
        for key in sorted({k for r in train for k in r if k.startswith("loss/")}):
            ax.plot([r["step"] for r in train if key in r], [r[key] for r in train if key in r], label=key[5:], alpha=0.7)
        ax.legend()
    ax.set(xlabel="optimiser step", ylabel="training loss", title="loss")
    ax = axes[1]
    if train:
        ax.plot([r["step"] for r in train], [r["lr"] for r in train])
    ax.set(xlabel="optimiser step", ylabel="learning rate", title="schedule")
    ax = axes[2]
    keys = sorted({k for r in evals for k in r if k.endswith("_top1") and k.count("_") == 1})
    for key in keys:
        ax.plot([r["epoch"] for r in evals if key in r], [r[key] for r in evals if key in r], marker="o", label=key)
    if keys:
        ax.legend()
    ax.set(xlabel="epoch", ylabel="held-out accuracy (%)", title="held-out")
    return _save(fig, Path(path))


def plot_reliability(bins: dict[str, Tensor], path: str | os.PathLike, title: str = "") -> Path:
    """Write a reliability diagram (accuracy per confidence bin against the diagonal, bin counts
    below) of `bins` from `metrics.reliability` to `path` (PNG); returns the path."""
    edges = bins["edges"].numpy()
    count = bins["count"].numpy()
    acc = bins["accuracy"].numpy()
    conf = bins["confidence"].numpy()
    width = np.diff(edges)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    filled = count > 0
    top.bar(edges[:-1][filled], acc[filled], width=width[filled], align="edge", edgecolor="k", label="accuracy")
    top.bar(edges[:-1][filled], conf[filled] - acc[filled], bottom=acc[filled], width=width[filled], align="edge",
            color="red", alpha=0.3, label="gap to confidence")
    top.plot([0, 1], [0, 1], "k--", lw=1)
    top.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=title or "reliability")
    top.legend(loc="upper left")
    bottom.bar(edges[:-1], count, width=width, align="edge", edgecolor="k")
    bottom.set(xlabel="confidence", ylabel="samples")
    return _save(fig, Path(path))


def plot_confusion(matrix: Tensor, class_names: list[str], path: str | os.PathLike, top: int = 20, title: str = "") -> Path:
    """Write the confusion matrix (rows: true, columns: predicted, row-normalised) restricted to the
    `top` most frequent true classes to `path` (PNG); returns the path."""
    m = matrix.double().numpy()
    support = m.sum(1)
    keep = [int(i) for i in np.argsort(-support, kind="stable")[:top] if support[i] > 0]
    sub = m[np.ix_(keep, keep)]
    rows = sub.sum(1, keepdims=True)
    norm = np.divide(sub, rows, out=np.zeros_like(sub), where=rows > 0)
    size = max(4.0, 0.35 * len(keep) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    labels = [class_names[i] if i < len(class_names) else str(i) for i in keep]
    ax.set_xticks(range(len(keep)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(keep)), labels, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=title or f"confusion ({len(keep)} most frequent classes)")
    return _save(fig, Path(path))


def plot_model_summary(rows: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write one summary figure of several models to `path` (PNG): top-1 accuracy per model and
    head (verb, noun, action) as grouped bars, and action top-1 against GFLOPs per view (models
    without a cost are left out of the scatter). `rows`: {"model", "verb_top1", "noun_top1",
    "action_top1", "gflops"} each; returns the path."""
    heads = ["verb_top1", "noun_top1", "action_top1"]
    names = [r["model"] for r in rows]
    fig, (bars, scatter) = plt.subplots(1, 2, figsize=(14, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    x = np.arange(len(rows))
    width = 0.8 / len(heads)
    for i, head in enumerate(heads):
        bars.bar(x + (i - 1) * width, [r[head] for r in rows], width, label=head.replace("_top1", ""))
    bars.set_xticks(x, names, rotation=30, ha="right")
    bars.set(ylabel="top-1 accuracy (%)", title="accuracy per model and head", ylim=(0, 100))
    bars.legend()
    for r in rows:
        if np.isfinite(r.get("gflops", float("nan"))):
            scatter.scatter(r["gflops"], r["action_top1"])
            scatter.annotate(r["model"], (r["gflops"], r["action_top1"]), textcoords="offset points", xytext=(4, 4),
                             fontsize=8)
    scatter.set_xscale("log")
    scatter.set(xlabel="GFLOPs per view (log)", ylabel="action top-1 (%)", title="accuracy against cost")
    return _save(fig, Path(path))
