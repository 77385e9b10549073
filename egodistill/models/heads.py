"""One linear classifier per task head (`verb`, `noun`, `action`, ...) over shared features."""
from __future__ import annotations

import torch
from torch import nn


class LinearHeads(nn.ModuleDict):
    """A `nn.Linear(feature_dim, classes)` per head, kept in the order the heads were given.

    State-dict keys are `<name>.weight` / `<name>.bias`, so a model that holds this as `head`
    stores `head.verb.weight`, `head.noun.bias`, ...
    """

    def __init__(self, feature_dim: int, heads: dict[str, int]) -> None:
        if not heads:
            raise ValueError("a model needs at least one head, e.g. {'verb': 97, 'noun': 300}")
        for name, classes in heads.items():
            if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
                raise ValueError(f"head '{name}': number of classes must be a positive int, got {classes!r}")
            if "." in name or not name:
                raise ValueError(f"head name {name!r} must be non-empty and contain no '.'")
        super().__init__({name: nn.Linear(feature_dim, classes) for name, classes in heads.items()})
        for layer in self.values():
            nn.init.trunc_normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)

    @property
    def classes(self) -> dict[str, int]:
        """Return {head name: number of classes}."""
        return {name: layer.out_features for name, layer in self.items()}

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return {head: logits [N, classes]} for features [N, feature_dim]."""
        return {name: layer(features) for name, layer in self.items()}


class FeatureTap:
    """Keeps what the last forward pass fed `model.head`: the pooled features `[N, D]` of every
    registered architecture (their `forward` is `head(features(x))`). A hook on the head, so it
    works inside wrappers (DDP) and costs nothing; `take()` returns and clears them."""

    def __init__(self, model: nn.Module):
        self.value: torch.Tensor | None = None
        self.handle = model.head.register_forward_pre_hook(self._keep)

    def _keep(self, module: nn.Module, args: tuple) -> None:
        self.value = args[0]

    def take(self) -> torch.Tensor:
        """Return the features of the last forward pass `[N, D]`; raise when none ran since."""
        if self.value is None:
            raise RuntimeError("feature tap: the model has not run since its features were last taken")
        value, self.value = self.value, None
        return value

    def remove(self) -> None:
        self.handle.remove()


def feature_dim(model: nn.Module) -> int:
    """Return D, the width of the pooled features `model.head` reads."""
    return next(layer.in_features for layer in model.head.values())
