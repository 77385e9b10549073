"""Run folders: weights in safetensors, the full training state for resume, and rebuilding a run.

    <run>/config.yaml          resolved config (model.heads filled in)
    <run>/info.json            the dataset's classes (prediction needs no annotation files)
    <run>/model.safetensors    best weights (by the held-out metric)
    <run>/last/                full state: model.safetensors, training_state.pt (optimizer,
                               scheduler, grad scaler, RNG), state.json (epoch, step, best, ...)

Everything is written to a temporary name and renamed into place. `last/` is replaced as a
whole: written as `last.tmp/`, the old one renamed to `last.old/`, the new one to `last/`, the
old one removed; a crash between the renames leaves `last.old/`, which `load_train_state` uses.
Loading never unpickles arbitrary objects (safetensors, `torch.load(weights_only=True)`).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from egodistill.atomic import atomic_path, write_json
from egodistill.config import Config, load_config, save_config
from egodistill.data.records import DatasetInfo

WEIGHTS_FILE = "model.safetensors"
INFO_FILE = "info.json"
CONFIG_FILE = "config.yaml"
LAST_DIR = "last"
STATE_FILE = "state.json"
TRAINING_STATE_FILE = "training_state.pt"


class CheckpointError(ValueError):
    """A checkpoint or run folder that cannot be read or does not fit the model."""


# ---------------------------------------------------------------------------------------------
# JSON and weights files (written through egodistill.atomic)
# ---------------------------------------------------------------------------------------------


def read_json(path: str | os.PathLike) -> Any:
    """Return the JSON data of `path`; a file that is not JSON (cut off, overwritten) raises
    CheckpointError naming it."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable JSON file ({e}); was it cut off or overwritten?") from None


# Files up to this size are hashed whole; larger ones (multi-GB stores) by size, mtime and
# their first and last MiB, which catches a re-pack without reading hundreds of GB.
FULL_HASH_LIMIT = 64 << 20


def file_digest(path: str | os.PathLike) -> dict[str, Any]:
    """Return {"path", "size", "sha256"} describing a file's content (see FULL_HASH_LIMIT; a larger file
    has "sha256-ends+mtime" instead of "sha256")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    st = path.stat()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if st.st_size <= FULL_HASH_LIMIT:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
            kind = "sha256"
        else:
            h.update(f.read(1 << 20))
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read(1 << 20))
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
            kind = "sha256-ends+mtime"
    return {"path": str(path.resolve()), "size": st.st_size, kind: h.hexdigest()}


def unwrap(model: nn.Module) -> nn.Module:
    """Return the module inside DDP / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def save_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Write `model`'s state dict (unwrapped, on CPU) to a safetensors file atomically."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    # safetensors refuses tensors sharing memory; clone those (tied weights are rare here).
    seen: dict[int, str] = {}
    for k, v in state.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else -1
        if ptr in seen and ptr != -1:
            state[k] = v.clone()
        seen[ptr] = k
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))


def load_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a safetensors state dict into `model` (strict); raises CheckpointError naming the file
    and the missing / unexpected / mis-shaped keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights not found: {path}")
    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e
    target = unwrap(model)
    own = target.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if shapes:
            parts.append(f"shape mismatches {shapes[:5]}")
        raise CheckpointError(f"{path} does not fit the model: " + "; ".join(parts))
    target.load_state_dict(state, strict=True)


# ---------------------------------------------------------------------------------------------
# Dataset info
# ---------------------------------------------------------------------------------------------


def info_to_dict(info: DatasetInfo) -> dict[str, Any]:
    """Return `info` as JSON-ready data (sets as sorted lists)."""
    return {
        "name": info.name,
        "heads": {h: list(names) for h, names in info.heads.items()},
        "tail_classes": {h: sorted(int(c) for c in cs) for h, cs in info.tail_classes.items()},
        "unseen_participants": sorted(info.unseen_participants),
        "action_heads": list(info.action_heads) if info.action_heads else None,
    }


def info_from_dict(data: dict[str, Any], source: str = INFO_FILE) -> DatasetInfo:
    """Return the DatasetInfo stored by `info_to_dict`; raises CheckpointError naming `source`."""
    try:
        return DatasetInfo(
            name=str(data["name"]),
            heads={str(h): [str(n) for n in names] for h, names in data["heads"].items()},
            tail_classes={str(h): {int(c) for c in cs} for h, cs in data.get("tail_classes", {}).items()},
            unseen_participants={str(p) for p in data.get("unseen_participants", [])},
            action_heads=tuple(data["action_heads"]) if data.get("action_heads") else None,
        )
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise CheckpointError(f"{source}: not a dataset info record ({type(e).__name__}: {e})") from e


def write_info(run_dir: str | os.PathLike, info: DatasetInfo) -> None:
    """Write `run_dir/info.json` atomically."""
    write_json(Path(run_dir) / INFO_FILE, info_to_dict(info))


def read_info(run_dir: str | os.PathLike) -> DatasetInfo:
    """Return the DatasetInfo saved in `run_dir/info.json`."""
    path = Path(run_dir) / INFO_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the run folder has no dataset info (info.json)")
    return info_from_dict(read_json(path), str(path))


# ---------------------------------------------------------------------------------------------
# Rebuilding a run
# ---------------------------------------------------------------------------------------------


def model_heads(cfg: Config, info: DatasetInfo) -> dict[str, int]:
    """Return {head: classes} of the run's model: `model.heads` when set, else the dataset's."""
    return dict(cfg.model.heads) or info.num_classes


def build_run_model(cfg: Config, info: DatasetInfo) -> nn.Module:
    """Return a freshly initialised model for the run's config and dataset (no pretrained load)."""
    from egodistill.data.modalities import get_modality
    from egodistill.models import build_model

    model_cfg = cfg.model
    if model_cfg.pretrained:  # the run's own weights replace the initialisation anyway
        from dataclasses import replace

        model_cfg = replace(model_cfg, pretrained="")
    return build_model(model_cfg, model_heads(cfg, info), get_modality(cfg.model.modality).channels(cfg))


def save_run_files(run_dir: str | os.PathLike, cfg: Config, info: DatasetInfo) -> None:
    """Write the run's resolved config (model.heads filled in) and dataset info."""
    from dataclasses import replace

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = replace(cfg, model=replace(cfg.model, heads=model_heads(cfg, info)))
    save_config(resolved, run_dir / CONFIG_FILE)
    write_info(run_dir, info)


def load_run(run_dir: str | os.PathLike, weights: str | os.PathLike | None = None) -> tuple[Config, nn.Module, DatasetInfo]:
    """Return (config, model in eval mode with the run's best weights, dataset info) of `run_dir`.

    `weights` overrides the weights file (e.g. `last/model.safetensors`).
    """
    run_dir = Path(run_dir)
    cfg_path = run_dir / CONFIG_FILE
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path}: not a run folder (no config.yaml)")
    cfg = load_config(cfg_path)
    info = read_info(run_dir)
    model = build_run_model(cfg, info)
    path = Path(weights) if weights else run_dir / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the run has no weights yet (was it trained to its first evaluation?)")
    load_weights(model, path)
    model.eval()
    return cfg, model, info


# ---------------------------------------------------------------------------------------------
# Full training state
# ---------------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Return the Python, NumPy and torch (CPU and CUDA) generator states as tensors and plain data."""
    py = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore generator states saved by `rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_train_state(run_dir: str | os.PathLike, model: nn.Module, training_state: dict[str, Any], state: dict[str, Any]) -> Path:
    """Replace `run_dir/last/` with model weights, `training_state` (optimizer, scheduler, scaler,
    RNG: tensors and plain data) and `state` (JSON: epoch, step, best metric, ...); returns last/."""
    run_dir = Path(run_dir)
    last, tmp, old = run_dir / LAST_DIR, run_dir / f"{LAST_DIR}.tmp", run_dir / f"{LAST_DIR}.old"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_weights(model, tmp / WEIGHTS_FILE)
    torch.save(training_state, tmp / TRAINING_STATE_FILE)
    write_json(tmp / STATE_FILE, state)
    if last.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(last, old)
    os.replace(tmp, last)
    if old.exists():
        shutil.rmtree(old)
    return last


def last_state_dir(run_dir: str | os.PathLike) -> Path | None:
    """Return the folder of the latest complete training state (last/ or, after a crash between
    renames, last.old/), or None."""
    run_dir = Path(run_dir)
    for name in (LAST_DIR, f"{LAST_DIR}.old"):
        d = run_dir / name
        if (d / STATE_FILE).is_file() and (d / TRAINING_STATE_FILE).is_file() and (d / WEIGHTS_FILE).is_file():
            return d
    return None


def load_train_state(run_dir: str | os.PathLike) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """Return (folder, training_state, state) of the run's latest training state; raises
    FileNotFoundError when there is none."""
    d = last_state_dir(run_dir)
    if d is None:
        raise FileNotFoundError(f"{Path(run_dir) / LAST_DIR}: no saved training state to resume from")
    state = read_json(d / STATE_FILE)
    if not isinstance(state, dict):
        raise CheckpointError(f"{d / STATE_FILE}: not a training state record (a JSON object)")
    try:
        training_state = torch.load(d / TRAINING_STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{d / TRAINING_STATE_FILE}: cannot be read safely ({e})") from e
    return d, training_state, state
