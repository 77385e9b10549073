"""FeatureTap: the pooled features a model's heads read, for every kind of architecture."""
from __future__ import annotations

import pytest
import torch

from egodistill.config import ModelConfig
from egodistill.models import build_model
from egodistill.models.heads import FeatureTap, feature_dim


@pytest.mark.parametrize("arch", ["cnn3d_nano", "swin_nano"])
def test_the_tap_holds_what_features_returns(arch):
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, drop_path=0.0), {"verb": 3, "noun": 4}, 3).eval()
    tap = FeatureTap(model)
    x = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
        want = model.features(x)
    got = tap.take()
    assert got.shape == (2, feature_dim(model)) and torch.allclose(got, want, atol=1e-6)
    model.features(x)  # the heads did not run: nothing new to take
    with pytest.raises(RuntimeError, match="has not run since"):
        tap.take()
    assert torch.allclose(model.head(got)["verb"], logits["verb"], atol=1e-6)
    assert tap.take() is got  # the head's own call is tapped too
    tap.remove()
    with torch.no_grad():
        model(x)
    assert tap.value is None
