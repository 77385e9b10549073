"""Typed run configuration: YAML files, dotted command-line overrides, strict validation.

A config is a tree of dataclasses (`Config` at the root). `load_config(path, overrides)` reads a
YAML file, applies `key.sub=value` overrides, and validates every key and type against the
schema, failing at start with a message that names the key and lists the valid or closest keys.
`save_config` writes the resolved config that a run stores in its folder.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from egodistill.atomic import write_text


class ConfigError(ValueError):
    """A config key or value that does not fit the schema."""


# YAML 1.1 (PyYAML's default) reads `no` / `off` / `yes` as booleans and `3e-4` as a string,
# so `precision: no` and `lr: 3e-4` would fail validation. Configs are read with YAML 1.2
# rules instead: only true/false are booleans and an exponent alone makes a float.
_BOOL_TAG, _FLOAT_TAG = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:float"
_BOOL_12 = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_FLOAT_12 = re.compile(
    r"^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans and floats."""


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(_BOOL_TAG, _BOOL_12, list("tTfF"))
_YamlLoader.add_implicit_resolver(_FLOAT_TAG, _FLOAT_12, list("-+0123456789."))


class _YamlDumper(yaml.SafeDumper):
    """SafeDumper that also quotes strings YAML 1.2 would read as floats (e.g. "3e-4"), so a
    saved config reads back the same with either YAML version."""


_YamlDumper.add_implicit_resolver(_FLOAT_TAG, _FLOAT_12, list("-+0123456789."))


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------


@dataclass
class AudioConfig:
    """Log-mel settings (METHOD.md §7)."""

    segment_seconds: float = 1.116  # one segment per sampled frame, centred on its time
    n_fft: int = 1024
    win_length: int = 160
    hop_length: int = 80
    n_mels: int = 128
    # Sample rate the mel filterbank is built for; None = the audio's true rate. The authors'
    # released audio teacher needs 16000 (torchaudio's default) on their 24 kHz audio.
    filterbank_rate: int | None = None
    mean: float = -28.1125
    std: float = 16.5627
    time_mask: int = 0  # max width of a training time mask, in spectrogram columns (0 = off)
    freq_mask: int = 0  # max width of a training frequency mask, in mel bands (0 = off)
    time_stretch: float = 0.0  # max relative stretch in training (0 = off)


@dataclass
class DataConfig:
    """Where samples come from and how each one becomes a view."""

    reader: str = "epic100"  # annotation reader: epic100 | ssv2 | something_else
    root: str = ""  # relative paths in `files` and `stores` are taken from here
    files: dict[str, str] = field(default_factory=dict)  # reader-specific: train, validation, verb_classes, ...
    # something_else only: class id = index in sorted(labels) as the authors' loader does
    # ("sorted", matches their checkpoints) or the label file's own values ("file").
    label_ids: Literal["sorted", "file"] = "sorted"
    stores: dict[str, str] = field(default_factory=dict)  # modality -> HDF5 store: rgb, flow, audio, layout
    train_split: str = "train"
    eval_split: str = "validation"
    heldout_fraction: float = 0.1  # of training videos, for model selection and dataset weights
    sampler: Literal["dense", "uniform"] = "dense"
    num_frames: int = 16
    stride: int = 2  # dense sampler only
    size: int = 224
    scale_range: list[float] = field(default_factory=lambda: [1.15, 1.43])
    hflip: bool = True
    color_jitter: float = 0.0  # strength of brightness/contrast/saturation jitter, RGB only
    # RGB and flow batches as uint8, normalised on the device by `model_input` (4x less to write
    # and copy); False = float32 normalised in the loader. Colour-jittered views are always float.
    uint8_frames: bool = True
    test_clips: int = 2
    test_crops: int = 1
    flow_channels: int = 3  # 3 = u, v, zeros (the authors' teachers); 2 = u, v
    # Where RGB and flow JPEGs are decoded: in the loader (cpu) or, batched, on the training
    # device after the host-to-device copy (gpu: needs CUDA; egodistill/data/gpu_decode.py).
    decode: Literal["cpu", "gpu"] = "cpu"
    max_boxes: int = 14
    audio: AudioConfig = field(default_factory=AudioConfig)


@dataclass
class ModelConfig:
    """A network for one modality with one linear head per task head."""

    arch: str = "swin_t"  # a registered architecture (`egodistill info --list`): swin_t, cnn3d_micro, r3d_18, ...
    preset: str = ""  # older configs: arch swin|stlt + preset name; read as arch=<preset>
    modality: str = "rgb"  # which batch entry the model reads
    heads: dict[str, int] = field(default_factory=dict)  # empty = the dataset's heads
    drop_path: float = 0.2
    pretrained: str = ""  # official Video Swin / authors' checkpoint to initialise from
    # Student with fewer frames: it reads every `frame_step`-th of the view's frames.
    frame_step: int = 1

    def __post_init__(self) -> None:
        # Configs and run folders written before the model registry name a family and a preset.
        if self.preset:
            if self.arch not in ("swin", "stlt", "swin_t"):  # the old families, or the default
                raise ConfigError(f"model.preset '{self.preset}' is only read with model.arch swin or stlt (older "
                                  f"configs); name the architecture alone: model.arch={self.preset}")
            self.arch, self.preset = self.preset, ""
        from egodistill.data.modalities import MODALITIES
        from egodistill.models.registry import get_model_spec, list_models, unknown_model_message

        if self.arch not in list_models():
            raise ConfigError(unknown_model_message(self.arch))
        modality = MODALITIES.get(self.modality)
        reads = get_model_spec(self.arch).reads
        if modality is not None and modality.reads != reads:
            fits = [n for n in list_models() if get_model_spec(n).reads == modality.reads]
            raise ConfigError(f"model.arch '{self.arch}' reads {reads}, but model.modality '{self.modality}' gives "
                              f"{modality.reads}; architectures for {self.modality}: {', '.join(fits)}")


@dataclass
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 0.02
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_epochs: float = 2.0
    grad_clip: float = 5.0


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 16
    eval_batch_size: int = 16
    grad_accum: int = 1
    precision: Literal["no", "fp16", "bf16"] = "no"
    seed: int = 0
    workers: int = 4
    # How batches reach the training process: worker processes writing into reused shared-memory
    # slots (shared), torch's DataLoader as it is (process), threads of this process (thread), or
    # auto (threads for up to two workers, shared for more); the same batches either way
    # (egodistill/data/loaders.py).
    loader: Literal["auto", "shared", "process", "thread"] = "auto"
    head_weights: dict[str, float] = field(default_factory=dict)  # empty = 1.0 each
    eval_every: int = 1  # epochs
    log_every: int = 10  # steps
    tensorboard: bool = False
    compile: bool = False  # torch.compile; off by default (minutes of compile time on CPU)
    max_steps: int = 0  # stop after this many optimiser steps (0 = no limit); for smoke tests
    checkpoint_every: int = 0  # save last/ (full state for --resume) every N optimiser steps; 0 = at epoch ends only
    select_metric: str = ""  # held-out metric the best checkpoint maximises; "" = action_top1, else mean head top-1
    # Which weights model.safetensors holds: the epoch that scores best on the held-out split, or
    # the last epoch's. "last" suits small held-out splits, where picking the maximum of many noisy
    # evaluations keeps a lucky early epoch (docs/distillation.md measures it); the held-out split
    # is still evaluated every epoch for the training curves and, in distillation, the weights.
    keep_weights: Literal["best", "last"] = "best"


@dataclass
class CacheConfig:
    views: int = 0  # K pre-drawn views per training sample; 0 = online distillation
    path: str = ""  # default: <run_dir>/teacher_cache.h5


@dataclass
class UnlabelledConfig:
    """Samples nobody labelled that the student distils from too (their loss is the KD term
    alone): an annotation split read without labels, and/or fixed-length windows of videos."""

    split: str = ""  # a split of the reader read without labels (a data.files key: test, unlabelled)
    videos: list[str] = field(default_factory=list)  # every `window`-frame window of these videos (rgb store)
    window: int = 0  # frames per window (with `videos`)
    hop: int = 0  # frames between window starts; 0 = `window` (windows side by side)
    # unlabelled samples per labelled sample in each epoch (cycling through all of them over
    # the epochs); 0 = every unlabelled sample in every epoch
    ratio: float = 0.0


@dataclass
class FeatureMatchConfig:
    """Feature matching (MARS, Crasto et al., CVPR 2019; not in the paper): the student's pooled
    features (the input of its linear heads) regress one teacher's on the same view, a squared
    error relative to the teacher features' mean square, weighted `alpha` in the loss. Student
    and teacher need the same feature width (e.g. the same architecture, as an RGB student of a
    flow teacher learns the motion the flow network sees)."""

    teacher: str = ""  # the modality of the teacher whose features the student matches; "" = off
    alpha: float = 1.0


@dataclass
class DistillConfig:
    teachers: list[str] = field(default_factory=list)  # run folders of trained teachers
    weighting: Literal["uniform", "per-sample", "dataset"] = "dataset"
    tau: float = 1.0  # weighting temperature
    temperature: float = 1.0  # KD temperature T
    # Temperature-scale the ensemble's logits per head, fitted on the held-out split, before they
    # teach (egodistill/engine/calibration.py); the paper does not, so off by default.
    calibrate: bool = False
    alpha_kd: float = 1.0
    alpha_gt: float = 0.0
    consistent: bool = True  # teachers and student see the same view
    cache: CacheConfig = field(default_factory=CacheConfig)
    unlabelled: UnlabelledConfig = field(default_factory=UnlabelledConfig)
    features: FeatureMatchConfig = field(default_factory=FeatureMatchConfig)


@dataclass
class Config:
    """The root of a run's configuration."""

    name: str = "run"
    run_dir: str = "runs/run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{origin.__name__}[{args}]"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Return `value` checked against (and, for int->float, coerced to) type `tp`."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if value is None:  # an empty section (`data:` with every key commented out) = defaults
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping of {tp.__name__} fields, got {value!r}")
        return _build(tp, value, key)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"config key '{key}' must be one of {_type_name(tp)}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"config key '{key}' must be {_type_name(tp)}, got {value!r}")
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}' must be a list ({_type_name(tp)}), got {value!r}")
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping ({_type_name(tp)}), got {value!r}")
        kt, vt = typing.get_args(tp)
        return {_convert(k, kt, f"{key}"): _convert(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' must be a float, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}' must be an int, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
        return value
    return value


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for k, v in values.items():
        full = f"{prefix}.{k}" if prefix else str(k)
        if k not in names:
            close = difflib.get_close_matches(str(k), names, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(repr((prefix + '.' if prefix else '') + c) for c in close)}? " if close else ""
            raise ConfigError(
                f"unknown config key '{full}': {hint}valid keys here are: {', '.join(names)}"
            )
        kwargs[k] = _convert(v, hints[k], full)
    return cls(**kwargs)


def _parse_scalar(text: str) -> Any:
    """Parse an override value with YAML rules (`3e-4` -> float, `[1,2]` -> list, `none` -> None)."""
    if text.lower() in ("none", "null", "~"):
        return None
    # YAML 1.2 scalars: '3e-4' is a float already, and a quoted '"3e-4"' stays a string.
    return yaml.load(text, Loader=_YamlLoader)


def _schema_type(parts: list[str]) -> Any:
    """Return the schema type at the dotted path `parts`, or None if the path is not in it."""
    tp: Any = Config
    for p in parts:
        if dataclasses.is_dataclass(tp):
            hints = typing.get_type_hints(tp)
            if p not in hints:
                return None
            tp = hints[p]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        else:
            return None
    return tp


def _is_text(tp: Any) -> bool:
    """True for str, a Literal of strings, or an optional one of those."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return all(isinstance(a, str) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return bool(args) and all(_is_text(a) for a in args)
    return tp is str


def _parse_override(parts: list[str], text: str) -> Any:
    """Return an override's value: verbatim text for string keys (so `name=001` or
    `data.files.train=2024` stay strings), else the YAML-parsed scalar."""
    tp = _schema_type(parts)
    quoted = len(text) >= 2 and text[0] == text[-1] and text[0] in "'\""
    if tp is not None and _is_text(tp) and not quoted:
        allows_none = typing.get_origin(tp) in (Union, types.UnionType) and type(None) in typing.get_args(tp)
        if not (allows_none and text.lower() in ("none", "null", "~")):
            return text
    return _parse_scalar(text)


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return `tree` with each `a.b.c=value` override set (the tree is modified in place)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = tree
        for p in parts[:-1]:
            if node.get(p) is None:  # absent, or an empty section in the YAML file
                node[p] = {}
            node = node[p]
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: '{p}' is not a section")
        try:
            node[parts[-1]] = _parse_override(parts, text.strip())
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: the value is not valid YAML: {e}") from None
    return tree


def config_from_dict(values: dict[str, Any]) -> Config:
    """Return a validated `Config` (keys, types and value ranges) from a plain (YAML-like) dict."""
    cfg = _build(Config, values or {})
    check_values(cfg)
    return cfg


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Return a config (or any dataclass) as plain dicts and lists, ready for YAML."""
    return dataclasses.asdict(cfg)


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> Config:
    """Return the validated config of YAML file `path` (None = defaults) with overrides applied."""
    tree: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        with open(path) as f:
            try:
                tree = yaml.load(f, Loader=_YamlLoader) or {}
            except yaml.YAMLError as e:
                raise ConfigError(f"{path}: not valid YAML: {e}") from e
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of config sections")
    apply_overrides(tree, overrides or [])
    try:
        return config_from_dict(tree)
    except ConfigError as e:
        raise ConfigError(f"{path or 'config'}: {e}") from None


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved config to `path` atomically (temp file, then rename)."""
    write_text(path, yaml.dump(config_to_dict(cfg), Dumper=_YamlDumper, sort_keys=False))


# --------------------------------------------------------------------------------------------
# Value ranges
# --------------------------------------------------------------------------------------------


def check_values(cfg: Config) -> None:
    """Raise ConfigError naming the first key whose value is outside its range (every number
    finite; counts, sizes, frames, strides and rates >= 1; learning rate and temperatures > 0;
    weights and widths >= 0; fractions in [0, 1)), or whose value does not fit another key's
    (model.frame_step against data.num_frames, data.audio.win_length against n_fft)."""
    def value(key: str) -> Any:
        node: Any = cfg
        for part in key.split("."):
            node = getattr(node, part)
        return node

    def fail(key: str, expected: str, got: Any) -> None:
        raise ConfigError(f"config key '{key}' must be {expected}, got {got!r}")

    def numbers(key: str) -> list[tuple[str, Any]]:
        """(key, number) of a number, of each item of a list, or of each value of a mapping."""
        v = value(key)
        if isinstance(v, list):
            return [(f"{key}[{i}]", x) for i, x in enumerate(v)]
        if isinstance(v, dict):
            return [(f"{key}.{k}", x) for k, x in v.items()]
        return [(key, v)]

    def need(keys: str, ok, expected: str) -> None:
        for key in keys.split():
            for name, v in numbers(key):
                if v is not None and not ok(v):
                    fail(name, expected, v)

    # Every number is finite (YAML reads .nan and .inf).
    def walk(node: Any, prefix: str) -> None:
        for f in dataclasses.fields(node):
            key = f"{prefix}{f.name}"
            v = getattr(node, f.name)
            if dataclasses.is_dataclass(v):
                walk(v, key + ".")
                continue
            items = v if isinstance(v, list) else list(v.values()) if isinstance(v, dict) else [v]
            for x in items:
                if isinstance(x, float) and not math.isfinite(x):
                    fail(key, "a finite number", x)

    walk(cfg, "")
    need("data.num_frames data.stride data.size data.test_clips data.test_crops data.max_boxes "
         "data.audio.n_fft data.audio.win_length data.audio.hop_length data.audio.n_mels data.audio.filterbank_rate "
         "model.frame_step model.heads train.epochs train.batch_size train.eval_batch_size train.grad_accum "
         "train.eval_every train.log_every", lambda v: v >= 1, ">= 1")
    need("data.color_jitter data.audio.time_mask data.audio.freq_mask optim.weight_decay optim.warmup_epochs "
         "optim.grad_clip train.seed train.workers train.max_steps train.checkpoint_every train.head_weights "
         "distill.alpha_kd distill.alpha_gt distill.features.alpha distill.cache.views distill.unlabelled.window "
         "distill.unlabelled.hop distill.unlabelled.ratio", lambda v: v >= 0, ">= 0")
    need("optim.lr data.audio.segment_seconds data.audio.std distill.tau distill.temperature data.scale_range",
         lambda v: v > 0, "> 0")
    need("data.heldout_fraction data.audio.time_stretch model.drop_path optim.betas", lambda v: 0 <= v < 1,
         "in [0, 1)")
    if cfg.data.flow_channels not in (2, 3):
        fail("data.flow_channels", "2 (u, v) or 3 (u, v, zeros)", cfg.data.flow_channels)
    if len(cfg.data.scale_range) != 2 or cfg.data.scale_range[0] > cfg.data.scale_range[1]:
        fail("data.scale_range", "[low, high] with low <= high", cfg.data.scale_range)
    if len(cfg.optim.betas) != 2:
        fail("optim.betas", "two numbers [beta1, beta2]", cfg.optim.betas)
    if cfg.data.audio.win_length > cfg.data.audio.n_fft:
        fail("data.audio.win_length", f"<= data.audio.n_fft ({cfg.data.audio.n_fft})", cfg.data.audio.win_length)
    unlabelled = cfg.distill.unlabelled
    if unlabelled.videos and unlabelled.window < 1:
        fail("distill.unlabelled.window", ">= 1 (frames per window) when distill.unlabelled.videos is given",
             unlabelled.window)
    step, frames = cfg.model.frame_step, cfg.data.num_frames
    if step > 1 and step >= frames:
        raise ConfigError(f"config key 'model.frame_step' must be 1 or smaller than data.num_frames ({frames}), "
                          f"got {step}: the model reads every frame_step-th of the view's {frames} frames, so "
                          f"{step} would leave it a single frame")


def resolve_path(cfg: Config, path: str) -> Path:
    """Return `path` taken relative to `cfg.data.root` unless it is absolute or root is empty."""
    p = Path(path).expanduser()
    if p.is_absolute() or not cfg.data.root:
        return p
    return Path(cfg.data.root).expanduser() / p
