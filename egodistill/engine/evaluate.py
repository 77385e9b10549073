"""Evaluation: K clips x C crops per sample, logits averaged over the views, metrics, files.

In a distributed run each process takes every `world`-th sample (`ShardSampler`); the logits
are gathered with each sample's dataset index and put back in dataset order, so every sample
counts exactly once whatever the number of processes.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.utils.data import Sampler

from egodistill.atomic import atomic_path
from egodistill.data.records import DatasetInfo, Sample
from egodistill.engine.inputs import average_views, to_device
from egodistill.engine.metrics import (
    check_heads,
    compute_metrics,
    confusion_matrix,
    epic_action_scores,
    reliability,
)

Predictor = Callable[[dict], dict[str, Tensor]]


class ShardSampler(Sampler[int]):
    """Indices rank, rank + world, ... of a dataset of `size` items (no padding, no repeats)."""

    def __init__(self, size: int, rank: int = 0, world: int = 1):
        self.size, self.rank, self.world = int(size), int(rank), int(world)

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.world))

    def __iter__(self):
        return iter(range(self.rank, self.size, self.world))


def eval_loader(dataset, cfg, accelerator=None, batch_size: int | None = None):
    """Return a DataLoader over this process's shard of `dataset` (test views, dataset order)."""
    from egodistill.data.dataset import build_loader

    rank = accelerator.process_index if accelerator is not None else 0
    world = accelerator.num_processes if accelerator is not None else 1
    return build_loader(dataset, cfg, train=False, batch_size=batch_size or cfg.train.eval_batch_size,
                        sampler=ShardSampler(len(dataset), rank, world))


def _gather_rows(x: Tensor, accelerator) -> Tensor:
    """Return every process's rows of `x` [n_r, ...] concatenated in rank order (n_r may differ)."""
    if accelerator is None or accelerator.num_processes == 1:
        return x
    counts = accelerator.gather(torch.tensor([x.shape[0]], device=accelerator.device)).tolist()
    padded = accelerator.pad_across_processes(x.to(accelerator.device).contiguous(), dim=0)
    gathered = accelerator.gather(padded)  # [world * max_n, ...]
    width = padded.shape[0]
    return torch.cat([gathered[r * width: r * width + n] for r, n in enumerate(counts)]).cpu()


_LABEL = "\0label:"  # predict_logits' key prefix for the labels it carries beside the logits


@torch.no_grad()
def predict_logits(predictor: Predictor, loader, accelerator=None, progress: bool = False,
                   desc: str = "evaluate", device: torch.device | str = "cpu", return_labels: bool = False) -> tuple:
    """Return ({head: [N, C]} logits averaged over each sample's views (float32, CPU), ids [N]).

    The one function that runs models (a student, a teacher, every teacher at once) over a
    loader. Rows are in dataset order (by `batch["index"]`), each sample exactly once even when
    processes' shards overlap or are uneven. `predictor(batch) -> {head: [B*V, C]}`. Without an
    accelerator it runs on `device`. `return_labels`: also return the batches' labels {head: [N]}
    in the same order (-1 where unknown).
    """
    from tqdm import tqdm

    device = accelerator.device if accelerator is not None else torch.device(device)
    main = accelerator is None or accelerator.is_main_process
    chunks: dict[str, list[Tensor]] = {}
    indices: list[Tensor] = []
    id_of: dict[int, str] = {}
    for batch in tqdm(loader, desc=desc, disable=not (progress and main), leave=False):
        b = len(batch["id"])
        batch = to_device(batch, device)
        if accelerator is not None:
            with accelerator.autocast():
                out = predictor(batch)
        else:
            out = predictor(batch)
        for h, z in average_views(out, b).items():  # [B*V, C] -> [B, C]
            chunks.setdefault(h, []).append(z.cpu())
        if return_labels:  # carried as one-column rows beside the logits, split off at the end
            for h, y in batch["labels"].items():
                chunks.setdefault(_LABEL + h, []).append(y.cpu()[:, None])
        indices.append(batch["index"].cpu())
        id_of.update(zip(batch["index"].tolist(), batch["id"]))
    heads = sorted(chunks)
    if accelerator is not None and accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        # A process with an empty shard still has to know the heads and classes to take part.
        shapes = gather_object([{h: chunks[h][0].shape[-1] for h in heads}] if heads else [{}])
        classes = next((s for s in shapes if s), {})
        heads = sorted(classes)
        local = {h: torch.cat(chunks[h]) if h in chunks else torch.zeros(0, classes[h]) for h in heads}
        index = torch.cat(indices) if indices else torch.zeros(0, dtype=torch.long)
        index = _gather_rows(index, accelerator)
        logits = {h: _gather_rows(local[h], accelerator) for h in heads}
        for part in gather_object([id_of]):
            id_of.update(part)
    else:
        index = torch.cat(indices) if indices else torch.zeros(0, dtype=torch.long)
        logits = {h: torch.cat(chunks[h]) for h in heads}
    # Dataset order, one row per sample: sort by index and drop repeats.
    order = torch.argsort(index, stable=True)
    index = index[order]
    keep = torch.ones_like(index, dtype=torch.bool)
    keep[1:] = index[1:] != index[:-1]
    rows = order[keep]
    ids = [id_of[int(i)] for i in index[keep].tolist()]
    logits = {h: z[rows] for h, z in logits.items()}
    if not return_labels:
        return logits, ids
    labels = {h[len(_LABEL):]: logits.pop(h)[:, 0] for h in list(logits) if h.startswith(_LABEL)}
    return logits, ids, labels


class ModelPredictor(torch.nn.Module):
    """A model plus the config that says which batch entry it reads and how: a `Predictor`,
    batch -> {head: [B*V, C]} (views folded into the rows). Train / eval mode is the caller's;
    `distill.ensemble.ModelTeacher` is the frozen kind. `name` identifies it (e.g. its run folder)."""

    def __init__(self, model: torch.nn.Module, model_cfg, name: str = ""):
        super().__init__()
        self.model = model
        self.model_cfg = model_cfg
        self.name = name or model_cfg.modality

    @property
    def modality(self) -> str:
        return self.model_cfg.modality

    def forward(self, batch: dict) -> dict[str, Tensor]:
        from egodistill.engine.inputs import model_input

        return self.model(model_input(batch, self.model_cfg))


def evaluate_dataset(predictor: Predictor, dataset, cfg, info: DatasetInfo, accelerator=None,
                     progress: bool = False, desc: str = "evaluate") -> tuple[dict[str, float], dict[str, Tensor], list[str]]:
    """Return (metrics, view-averaged logits {head: [N, C]}, ids) of `predictor` on `dataset`."""
    loader = eval_loader(dataset, cfg, accelerator)
    logits, ids = predict_logits(predictor, loader, accelerator, progress=progress, desc=desc)
    by_id = {s.id: s for s in dataset.samples}
    samples = [by_id[i] for i in ids]
    return compute_metrics(logits, samples, info), logits, ids


def count_nonfinite(logits: dict[str, Tensor]) -> int:
    """Return the number of samples (rows of {head: [N, C]}) with a NaN or infinite logit in any head."""
    bad = [(~torch.isfinite(z)).any(1) for z in logits.values() if z.numel()]
    return int(torch.stack(bad).any(0).sum()) if bad else 0


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def save_predictions(path: str | os.PathLike, logits: dict[str, Tensor], ids: list[str]) -> Path:
    """Write per-sample logits as safetensors (`logits.<head>` [N, C]; ids in the metadata) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({f"logits.{h}": z.float().contiguous() for h, z in logits.items()}, str(tmp),
                  metadata={"ids": json.dumps(ids)})
    return path


def load_predictions(path: str | os.PathLike) -> tuple[dict[str, Tensor], list[str]]:
    """Return ({head: [N, C]}, ids) written by `save_predictions`."""
    from safetensors import safe_open

    path = Path(path)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "ids" not in meta:
        raise ValueError(f"{path}: not a predictions file (no 'ids' metadata)")
    tensors = load_file(str(path))
    return {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("logits.")}, json.loads(meta["ids"])


def epic_submission(logits: dict[str, Tensor], ids: list[str], *, sls_pt: int = 2, sls_tl: int = 3, sls_td: int = 3,
                    actions: int = 100) -> dict[str, Any]:
    """Return the EPIC-KITCHENS-100 action recognition challenge submission (version 0.2): per
    narration id the softmax scores of every verb and noun class and the top-`actions` actions
    ("verb,noun": p(verb) * p(noun), from the top-100 verbs x top-100 nouns)."""
    for h in ("verb", "noun"):
        if h not in logits:
            raise ValueError(f"the EPIC submission needs a '{h}' head; the model's heads are {sorted(logits)}")
    bad = count_nonfinite({h: logits[h] for h in ("verb", "noun")})
    if bad:
        raise ValueError(f"the model gives NaN or infinite logits for {bad} of {len(ids)} segments; a submission "
                         f"needs real scores (were the run's weights saved from a diverged training?)")
    pv = logits["verb"].double().softmax(1)
    pn = logits["noun"].double().softmax(1)
    results: dict[str, Any] = {}
    for start in range(0, len(ids), 512):
        scores, action_ids = epic_action_scores(pv[start:start + 512], pn[start:start + 512])
        scores, action_ids = scores[:, :actions].tolist(), action_ids[:, :actions].tolist()
        for r, narration_id in enumerate(ids[start:start + 512]):
            i = start + r
            results[narration_id] = {
                "verb": {str(c): float(p) for c, p in enumerate(pv[i].tolist())},
                "noun": {str(c): float(p) for c, p in enumerate(pn[i].tolist())},
                "action": {f"{a // 1000},{a % 1000}": float(s) for a, s in zip(action_ids[r], scores[r])},
            }
    return {"version": "0.2", "challenge": "action_recognition", "sls_pt": sls_pt, "sls_tl": sls_tl,
            "sls_td": sls_td, "results": results}


def append_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one JSON line to `path` (a log; each line is written whole and flushed)."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def evaluation_plots(out_dir: str | os.PathLike, split: str, logits: dict[str, Tensor], samples: list[Sample],
                     info: DatasetInfo, top: int = 20) -> list[Path]:
    """Write a reliability diagram and a confusion matrix (the `top` most frequent classes) per
    labelled head to `out_dir`; returns the files written."""
    from egodistill.engine.plots import plot_confusion, plot_reliability

    written = []
    for head, names in info.heads.items():
        y = torch.tensor([s.labels.get(head, -1) for s in samples], dtype=torch.long)
        known = y >= 0
        if not known.any():
            continue
        z = logits[head][known].double()
        probs = z.softmax(1)
        conf, pred = probs.max(1)
        bins = reliability(conf, pred == y[known])
        written.append(plot_reliability(bins, Path(out_dir) / f"reliability_{split}_{head}.png", title=f"{split}: {head}"))
        cm = confusion_matrix(z, y[known], len(names))
        written.append(plot_confusion(cm, names, Path(out_dir) / f"confusion_{split}_{head}.png", top=top,
                                      title=f"{split}: {head} ({min(top, len(names))} most frequent classes)"))
    return written


def format_metrics(metrics: dict[str, float]) -> str:
    """Return a plain-text table of accuracies (with 95% intervals), ECE and subset sizes."""
    lines = []
    for key in sorted(metrics):
        if key.endswith("_ci95"):
            continue
        value = metrics[key]
        if key.endswith("_n") or key == "num_samples":
            lines.append(f"{key:<24} {int(value):>8d}")
        elif f"{key}_ci95" in metrics:
            lines.append(f"{key:<24} {value:8.2f} ± {metrics[key + '_ci95']:.2f}")
        else:
            lines.append(f"{key:<24} {value:8.2f}")
    return "\n".join(lines)


def check_model_heads(heads: dict[str, int], info: DatasetInfo, what: str) -> None:
    """Raise ValueError explaining a mismatch between a model's heads {head: classes} and a dataset's."""
    check_heads({h: torch.empty(0, n) for h, n in heads.items()}, info, what)
