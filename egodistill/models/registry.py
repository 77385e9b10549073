"""The model registry: every architecture `model.arch` can name, in the style of timm's `register_model`.

An architecture is one module that registers a builder per preset:

    @register_model("cnn3d_nano", family="cnn3d", description="...")
    def cnn3d_nano(heads, in_channels, *, drop_path=0.0) -> nn.Module: ...

`build_model`, `egodistill info`, the cost report and the config check look names up here
instead of branching on them. Builders take `(heads: {head: classes}, in_channels: int, *,
drop_path: float)` and return a model whose `forward(input) -> {head: logits [N, classes]}`.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """One registered architecture: its name, family (the module that defines it) and builder."""

    name: str
    family: str
    build: Builder
    description: str = ""
    reads: str = "clips"  # the input it takes: "clips" [N, T, C, H, W] or "layout" (a dict of boxes)


_MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, *, family: str, description: str = "", reads: str = "clips") -> Callable[[Builder], Builder]:
    """Return a decorator that registers `builder` under `name` (names are unique); `reads` is the
    input it takes ("clips" or "layout"), checked against the modality's at config load."""

    def decorate(builder: Builder) -> Builder:
        if name in _MODELS:
            raise ValueError(f"model '{name}' is registered twice ({_MODELS[name].family} and {family})")
        _MODELS[name] = ModelSpec(name, family, builder, description, reads)
        return builder

    return decorate


def _load_architectures() -> None:
    # Importing a family's module registers its presets; listed here once so that the registry
    # is complete whoever asks first.
    from egodistill.models import cnn3d, layout_tcn, stlt, swin, tv_video  # noqa: F401


def list_models(family: str | None = None) -> list[str]:
    """Return the registered model names (of one family, if given), sorted."""
    _load_architectures()
    return sorted(n for n, s in _MODELS.items() if family is None or s.family == family)


def unknown_model_message(name: str) -> str:
    """Return the error text for an unregistered name: the closest matches and every choice."""
    choices = list_models()
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    return f"unknown model.arch '{name}': {hint}registered architectures: {', '.join(choices)}"


def get_model_spec(name: str) -> ModelSpec:
    """Return the registered `ModelSpec` of `name`; raise KeyError naming the closest choices."""
    _load_architectures()
    if name not in _MODELS:
        raise KeyError(unknown_model_message(name))
    return _MODELS[name]
