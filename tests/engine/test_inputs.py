"""model_input: views folded into the batch, frames subsampled, compact batches made model-ready."""
from __future__ import annotations

import torch

from egodistill.config import ModelConfig
from egodistill.data.views import IMAGENET_MEAN, IMAGENET_STD
from egodistill.engine.inputs import model_input


def test_uint8_rgb_is_folded_subsampled_and_normalised():
    x = torch.randint(0, 256, (2, 3, 8, 3, 4, 4), dtype=torch.uint8)  # [B, V, T, C, S, S]
    out = model_input({"rgb": x}, ModelConfig(modality="rgb", frame_step=2))
    assert out.shape == (6, 4, 3, 4, 4) and out.dtype == torch.float32
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    expected = (x.reshape(6, 8, 3, 4, 4)[:, ::2].float() / 255 - mean) / std
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_one_channel_audio_reaches_the_model_as_three_identical_channels():
    x = torch.randn(2, 1, 4, 1, 5, 5)  # [B, V, T, 1, S, S]
    out = model_input({"audio": x}, ModelConfig(modality="audio"))
    assert out.shape == (2, 4, 3, 5, 5)
    for c in range(3):
        torch.testing.assert_close(out[:, :, c], x[:, 0, :, 0])
    # Mel-band rows (R = 3 < S = 5, laid out [T, S, R] as the loader builds them) are repeated
    # to S rows, nearest as F.interpolate, before the channel repeat.
    bands = torch.randn(2, 1, 4, 5, 3).transpose(-1, -2).unsqueeze(3)  # [B, V, T, 1, R, S]
    out = model_input({"audio": bands}, ModelConfig(modality="audio"))
    rows = torch.nn.functional.interpolate(bands[:, 0, :, 0], size=(5, 5), mode="nearest")  # [B, T, S, S]
    assert out.shape == (2, 4, 3, 5, 5) and torch.equal(out[:, :, 2], rows)
    float_rgb = torch.randn(1, 1, 2, 3, 4, 4)
    assert torch.equal(model_input({"rgb": float_rgb}, ModelConfig(modality="rgb")), float_rgb[:, 0])  # already float
