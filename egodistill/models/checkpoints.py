"""Load published weights into our models: official Video Swin, the authors' Swin and STLT files, ours.

Supported sources (`load_official_checkpoint` tells them apart by their key names):

* **official Video Swin** (`swin_tiny_patch244_window877_kinetics400_1k.pth`, mmaction2):
  `{"meta": ..., "state_dict": {...}}`, backbone keys `backbone.layers.<i>.blocks.<j>...`,
  `backbone.layers.<i>.downsample...`, the Kinetics classifier `cls_head.fc_cls.*`.
* **the authors' Swin** (`model_checkpoint.pt`): a plain state dict with the same backbone
  keys and `classifiers.<HEAD>.*` (`VERB`, `NOUN`, `ACTION`), maybe under `_orig_mod.`.
* **the authors' STLT**: `temporal_transformer.*` and `classifiers.<HEAD>.*`.
* **torchvision's video models** (`r3d_18-b3b3357e.pth`, ...): torchvision's key names, the
  Kinetics classifier `fc` / `classifier.1` / `head.1` (the model's `from_torchvision` names it).
* **ours** (`model.safetensors` of a run): our own key names, for any registered architecture.

Files are read safely: `.safetensors` with safetensors, anything else with
`torch.load(weights_only=True)`, which accepts mmaction's `meta` (strings, numbers, dicts)
but refuses arbitrary pickled objects; such a file must be re-saved as a plain state dict.
"""
from __future__ import annotations

import os
import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn



class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model."""


@dataclass
class LoadReport:
    """What `load_official_checkpoint` did with each key. Key lists name *our* keys except
    `unexpected` and `skipped`, which name the file's."""

    source: str
    format: str  # "official" | "authors" | "authors_stlt" | "torchvision" | "egodistill"
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # ours, not in the file (left at init)
    new_heads: list[str] = field(default_factory=list)  # our head weights the file has no classifier for
    unexpected: list[str] = field(default_factory=list)  # the file's, with no place in the model
    skipped: list[str] = field(default_factory=list)  # the file's classifiers for heads we lack
    mismatched: list[str] = field(default_factory=list)  # "key: file shape vs ours"
    adapted: list[str] = field(default_factory=list)  # "key: how it was adapted"
    ignored_buffers: list[str] = field(default_factory=list)  # equal to the model's own, not loaded

    @property
    def ok(self) -> bool:
        """True when every weight of the model's body came from the file and every file key was used."""
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        lines = [f"checkpoint {self.source} ({self.format}): {len(self.loaded)} tensors loaded"]
        for title, items in (
            ("missing (kept at init)", self.missing),
            ("unexpected (not used)", self.unexpected),
            ("shape mismatch", self.mismatched),
            ("adapted", self.adapted),
            ("new heads (fresh init)", self.new_heads),
            ("classifiers skipped (no such head)", self.skipped),
            ("ignored buffers (equal to the model's)", self.ignored_buffers),
        ):
            if items:
                shown = items if len(items) <= 8 else items[:8] + [f"... and {len(items) - 8} more"]
                lines.append(f"  {title}: {len(items)}")
                lines.extend(f"    {s}" for s in shown)
        return "\n".join(lines)

    printable = __str__


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

_WRAPPER_PREFIXES = ("_orig_mod.", "module.")


def read_state_dict(source: str | os.PathLike | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Return the tensors of a checkpoint file (or mapping), unwrapped: mmaction's `state_dict`
    entry, and `_orig_mod.` (torch.compile) / `module.` (DDP) prefixes, are removed."""
    name = str(source) if not isinstance(source, Mapping) else "<state dict>"
    if isinstance(source, Mapping):
        data: object = dict(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        if path.suffix == ".safetensors":
            from safetensors import SafetensorError
            from safetensors.torch import load_file

            try:
                data = load_file(str(path))
            except SafetensorError as e:
                raise CheckpointError(f"{path}: not a readable safetensors file ({e}); a file renamed to "
                                      ".safetensors is not converted by the name") from None
        else:
            try:
                data = torch.load(path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError as e:
                raise CheckpointError(
                    f"{path}: cannot be read with torch.load(weights_only=True) ({e}); it holds pickled "
                    "objects other than tensors and plain containers. Re-save its state dict "
                    "(torch.save(ckpt['state_dict'], 'clean.pth')) in a trusted environment."
                ) from None
            except (RuntimeError, EOFError) as e:
                raise CheckpointError(f"{path}: not a readable torch checkpoint ({e})") from None
    if isinstance(data, Mapping):
        for wrapper in ("state_dict", "model", "model_state_dict"):
            if wrapper in data and isinstance(data[wrapper], Mapping):
                data = data[wrapper]
                break
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{name}: expected a state dict (mapping of names to tensors), got {type(data).__name__}")
    out: dict[str, torch.Tensor] = {}
    for key, value in data.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{name}: entry '{key}' is {type(value).__name__}, expected a tensor")
        k = str(key)
        stripped = True
        while stripped:
            stripped = False
            for prefix in _WRAPPER_PREFIXES:
                if k.startswith(prefix):
                    k, stripped = k[len(prefix):], True
        out[k] = value
    if not out:
        raise CheckpointError(f"{name}: the state dict is empty")
    return out


# --------------------------------------------------------------------------------------------
# Key mapping
# --------------------------------------------------------------------------------------------

_BLOCK = re.compile(r"^backbone\.layers\.(\d+)\.blocks\.(\d+)\.(.+)$")
_DOWNSAMPLE = re.compile(r"^backbone\.layers\.(\d+)\.downsample\.(.+)$")
_CLASSIFIER = re.compile(r"^(?:classifiers\.([^.]+)|cls_head\.(fc_cls)|head\.([^.]+))\.(weight|bias)$")
_OUR_BLOCK = re.compile(r"^backbone\.features\.(\d+)\.(\d+)\.(.+)$")
_OUR_MERGE = re.compile(r"^backbone\.features\.(\d+)\.(reduction|norm)\.(.+)$")
_MLP_TO_OURS = {"mlp.fc1.": "mlp.0.", "mlp.fc2.": "mlp.3."}  # official Mlp -> torchvision MLP (Sequential)

# File head name -> our head name, unless the caller says otherwise. The official Kinetics
# classifier goes to a head named `kinetics400` when the model has one.
DEFAULT_HEADS_MAP = {"fc_cls": "kinetics400", "VERB": "verb", "NOUN": "noun", "ACTION": "action"}


def _head_target(match: re.Match, heads_map: Mapping[str, str]) -> tuple[str, str]:
    """Return (our head name, `head.<name>.<param>`) for a classifier key match."""
    if match.group(3):  # already ours: `head.<name>.<param>`
        ours = match.group(3)
    else:
        file_head = match.group(1) or match.group(2)
        ours = heads_map.get(file_head, file_head.lower())
    return ours, f"head.{ours}.{match.group(4)}"


def official_swin_key(key: str) -> str | None:
    """Return our key for an official / authors' Video Swin backbone key (None if not backbone).

    `backbone.layers.i.blocks.j.X` -> `backbone.features.<2i>.<j>.X` (`mlp.fc1/fc2` -> `mlp.0/3`),
    `backbone.layers.i.downsample.X` -> `backbone.features.<2i+1>.X`; `patch_embed` and `norm` keep
    their names.
    """
    if m := _BLOCK.match(key):
        rest = m.group(3)
        for a, b in _MLP_TO_OURS.items():
            if rest.startswith(a):
                rest = b + rest[len(a):]
        return f"backbone.features.{2 * int(m.group(1))}.{m.group(2)}.{rest}"
    if m := _DOWNSAMPLE.match(key):
        return f"backbone.features.{2 * int(m.group(1)) + 1}.{m.group(2)}"
    if key.startswith(("backbone.patch_embed.", "backbone.norm.")):
        return key
    return None


def our_swin_key_to_official(key: str, heads_map: Mapping[str, str] | None = None) -> str:
    """Return the official name of one of our Video Swin keys (inverse of `official_swin_key`;
    heads go to `classifiers.<NAME>` by the inverse of `heads_map`, `fc_cls` to `cls_head.fc_cls`)."""
    if m := _OUR_BLOCK.match(key):
        stage, rest = int(m.group(1)), m.group(3)
        for a, b in _MLP_TO_OURS.items():
            if rest.startswith(b):
                rest = a + rest[len(b):]
        return f"backbone.layers.{stage // 2}.blocks.{m.group(2)}.{rest}"
    if m := _OUR_MERGE.match(key):
        return f"backbone.layers.{int(m.group(1)) // 2}.downsample.{m.group(2)}.{m.group(3)}"
    if key.startswith("head."):
        _, name, param = key.split(".")
        inverse = {v: k for k, v in {**DEFAULT_HEADS_MAP, **(heads_map or {})}.items()}
        file_head = inverse.get(name, name.upper())
        return f"cls_head.fc_cls.{param}" if file_head == "fc_cls" else f"classifiers.{file_head}.{param}"
    return key


def to_official_state_dict(model: nn.Module, heads_map: Mapping[str, str] | None = None) -> dict[str, torch.Tensor]:
    """Return `model`'s weights under the official Video Swin names (the inverse of loading)."""
    return {our_swin_key_to_official(k, heads_map): v for k, v in model.state_dict().items()}


_STLT_PREFIXES = [  # the authors' Stlt module names -> ours (longest first)
    ("temporal_transformer.layout_embedding.category_box_embeddings.category_embeddings.", "embed.category."),
    ("temporal_transformer.layout_embedding.category_box_embeddings.box_embedding.", "embed.box."),
    ("temporal_transformer.layout_embedding.category_box_embeddings.score_embedding.", "embed.score."),
    ("temporal_transformer.layout_embedding.category_box_embeddings.side_embedding.", "embed.side."),
    ("temporal_transformer.layout_embedding.category_box_embeddings.state_embedding.", "embed.state."),
    ("temporal_transformer.layout_embedding.category_box_embeddings.layer_norm.", "embed.norm."),
    ("temporal_transformer.layout_embedding.cls_token", "frame_cls"),
    ("temporal_transformer.layout_embedding.transformer.", "frame_encoder."),
    ("temporal_transformer.position_embeddings.", "position."),
    ("temporal_transformer.layer_norm.", "temporal_norm."),
    ("temporal_transformer.cls_token", "video_cls"),
    ("temporal_transformer.transformer.", "temporal_encoder."),
]

# Our embedding row i is the authors' row ROWS[i]. Theirs: category 0 pad, 1 object, 2 hand;
# side 0 none, 1 left, 2 right; state 0 none, 1..5 = HandState 0..4. Ours: see stlt.py.
STLT_ROWS = {
    "embed.category.weight": [0, 2, 1],
    "embed.side.weight": [1, 2, 0],
    "embed.state.weight": [1, 2, 3, 4, 5, 0],
}


def authors_stlt_key(key: str) -> str | None:
    """Return our STLT key for one of the authors' Stlt backbone keys (None if not one)."""
    for a, b in _STLT_PREFIXES:
        if key.startswith(a):
            return b + key[len(a):]
    return None


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


FORMAT_NAMES = {
    "official": "Video Swin (official)", "authors": "Video Swin (the authors')", "authors_stlt": "STLT (the authors')",
    "torchvision": "torchvision", "egodistill": "egodistill",
}


def _detect_format(keys: list[str], ours: Mapping[str, torch.Tensor]) -> str:
    """Return the file's format from its key names (`ours`: the model's state dict)."""
    if any(k.startswith("temporal_transformer.") for k in keys):
        return "authors_stlt"
    if any(k.startswith("classifiers.") for k in keys) and any(k.startswith("backbone.layers.") for k in keys):
        return "authors"
    if any(k.startswith(("backbone.layers.", "cls_head.")) for k in keys):
        return "official"
    if any(k in ours or k.startswith("backbone.") for k in keys):
        return "egodistill"
    return "torchvision"  # torchvision's own names (`stem.0.weight`, ..., `fc.weight`)


def _adapt_patch_embed(value: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, str]:
    """Return the first-layer weight [D, C_file, ...] for C_model input channels: the mean over
    the file's channels, repeated (cross-modality initialisation, as TSN does for flow)."""
    c_file, c_model = value.shape[1], target.shape[1]
    mean = value.mean(dim=1, keepdim=True)  # [D, 1, t, h, w]
    return mean.expand(-1, c_model, *([-1] * (value.dim() - 2))).clone(), (
        f"{c_file} input channels -> {c_model}: mean over the file's channels, repeated"
    )


def _adapt_rows(value: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, str]:
    """Return position embeddings with the model's row count: the file's first rows, the model's
    own initial rows beyond the file's."""
    out = target.clone()
    n = min(len(value), len(target))
    out[:n] = value[:n]
    return out, f"{len(value)} positions in the file, {len(target)} in the model: first {n} copied"


def load_official_checkpoint(
    model: nn.Module,
    path_or_state_dict: str | os.PathLike | Mapping[str, torch.Tensor],
    *,
    strict: bool = True,
    heads_map: Mapping[str, str] | None = None,
) -> LoadReport:
    """Load an official Video Swin, authors' (Swin or STLT), torchvision or egodistill checkpoint into `model`.

    `model` says what it loads: `checkpoint_formats`, `checkpoint_key(file key, format)` -> our
    key, `first_layer` (the input weight adapted to other channel counts) and, for torchvision's
    files, `from_torchvision(state)`. Returns a `LoadReport`. Keys are renamed to ours; the first layer is adapted when the input
    channels differ (mean over the file's RGB channels); the authors' STLT embedding rows are
    re-ordered to our index conventions; `relative_position_index` buffers are checked equal to
    the model's (torchvision computes its own) and reported as ignored buffers. Classifiers load
    into the head that `heads_map` (default `DEFAULT_HEADS_MAP`: VERB -> verb, fc_cls ->
    kinetics400, ...) names when the model has it; otherwise they are reported as skipped and our
    heads keep their fresh initialisation (fine-tuning to a new task).

    strict: raise `CheckpointError` (with the report) if any weight of the model body is missing,
    any file key is unused, or a shape does not fit and cannot be adapted. With strict=False
    whatever fits is loaded and the rest reported.
    """
    source = "<state dict>" if isinstance(path_or_state_dict, Mapping) else str(path_or_state_dict)
    state = read_state_dict(path_or_state_dict)
    ours = model.state_dict()
    fmt = _detect_format(list(state), ours)
    report = LoadReport(source=source, format=fmt)
    heads_map = {**DEFAULT_HEADS_MAP, **(heads_map or {})}
    our_heads = set(getattr(model, "heads", {}))

    formats = getattr(model, "checkpoint_formats", ())
    if fmt == "torchvision" and hasattr(model, "from_torchvision"):
        state = model.from_torchvision(state)
    if fmt not in formats:
        loads = ", ".join(FORMAT_NAMES[f] for f in formats) or "no checkpoints"
        raise CheckpointError(f"{source}: a {FORMAT_NAMES[fmt]} checkpoint cannot initialise a "
                              f"{type(model).__name__} model (it loads: {loads})")
    body_key: Callable[[str, str], str | None] = getattr(model, "checkpoint_key", lambda key, fmt: None)
    first_layer = getattr(model, "first_layer", "")

    new: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if m := _CLASSIFIER.match(key):
            head, target = _head_target(m, heads_map)
            if head not in our_heads:
                report.skipped.append(f"{key} {list(value.shape)}")
                continue
        elif key in ours and fmt == "egodistill":
            target = key
        else:
            target = body_key(key, fmt)
            if target is None or target not in ours:
                report.unexpected.append(key)
                continue
        mine = ours[target]
        if target.endswith("relative_position_index"):
            if value.shape != mine.shape or not torch.equal(value.to(mine.dtype), mine):
                report.mismatched.append(f"{key}: relative position index differs from the model's (window size?)")
            else:
                report.ignored_buffers.append(key)
            continue
        if target in STLT_ROWS and fmt == "authors_stlt":
            rows = STLT_ROWS[target]
            if value.shape != mine.shape:
                report.mismatched.append(f"{key}: {list(value.shape)} in the file vs {list(mine.shape)} in the model")
                continue
            value = value[rows]
            report.adapted.append(f"{target}: rows re-ordered from the authors' indices {rows}")
        if value.shape != mine.shape:
            if target == first_layer and value.shape[:1] + value.shape[2:] == mine.shape[:1] + mine.shape[2:]:
                value, how = _adapt_patch_embed(value, mine)
                report.adapted.append(f"{target}: {how}")
            elif target == "position.weight" and value.shape[1:] == mine.shape[1:]:
                value, how = _adapt_rows(value, mine)
                report.adapted.append(f"{target}: {how}")
            else:
                report.mismatched.append(f"{key}: {list(value.shape)} in the file vs {list(mine.shape)} in the model")
                continue
        if target in new:
            raise CheckpointError(f"{source}: two keys map to {target} (the second is {key})")
        new[target] = value.to(dtype=mine.dtype)
        report.loaded.append(target)

    for key in ours:
        if key in new or key.endswith("relative_position_index"):
            continue  # buffers torchvision computes itself need not be in the file
        if key.startswith("head."):
            report.new_heads.append(key)
        else:
            report.missing.append(key)

    if strict and not report.ok:
        raise CheckpointError(f"checkpoint does not fit the model (strict loading):\n{report}")
    merged = {**ours, **new}
    model.load_state_dict(merged, strict=True)
    return report
