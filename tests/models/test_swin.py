"""Video Swin on torchvision: SDPA vs explicit attention, heads, input layout, channels, training."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from egodistill.config import ModelConfig
from egodistill.models import build_model, list_models
from egodistill.models.swin import SWIN_PRESETS, VideoSwin, WindowAttention3d

TINY = dict(patch_size=(2, 4, 4), embed_dim=16, depths=(2, 2), num_heads=(2, 4), window_size=(2, 3, 3))


def _tiny(heads=None, in_channels=3, **kw) -> VideoSwin:
    torch.manual_seed(0)
    return VideoSwin(heads or {"verb": 5, "noun": 7}, in_channels, **{**TINY, "drop_path": 0.0, **kw})


@pytest.mark.parametrize(
    "shape",
    [
        (2, 8, 3, 24, 24),  # windows tile the tokens exactly (4x6x6 tokens, window 2x3x3)
        (3, 6, 3, 28, 20),  # padding to whole windows in every axis (3x7x5 tokens)
        (1, 2, 3, 12, 12),  # the window shrinks to the input (1x3x3 tokens): no shift
    ],
)
def test_sdpa_matches_explicit_attention(shape):
    model = _tiny().eval()
    x = torch.randn(*shape)
    with torch.no_grad():
        model.set_sdpa(False)
        ref = model(x)
        model.set_sdpa(True)
        got = model(x)
    for head in ref:
        torch.testing.assert_close(got[head], ref[head], atol=1e-5, rtol=0)


def test_sdpa_gradients_match_explicit_attention():
    model = _tiny()
    x = torch.randn(2, 8, 3, 24, 24)
    grads = []
    for sdpa in (False, True):
        model.set_sdpa(sdpa)
        model.zero_grad()
        out = model(x)
        (out["verb"].square().sum() + out["noun"].sum()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4, msg=name)


def test_sdpa_flag_reaches_every_attention_layer():
    model = _tiny()
    attn = [m for m in model.modules() if isinstance(m, WindowAttention3d)]
    assert len(attn) == sum(TINY["depths"])
    model.set_sdpa(False)
    assert not any(m.sdpa for m in attn) and model.sdpa is False
    model.set_sdpa(True)
    assert all(m.sdpa for m in attn)
    # Odd blocks shift by half a window, as Video Swin does.
    assert [m.shift_size for m in attn[:2]] == [[0, 0, 0], [1, 1, 1]]


def test_logits_are_one_linear_layer_per_head_over_mean_pooled_features():
    model = _tiny().eval()
    x = torch.randn(2, 4, 3, 16, 16)
    with torch.no_grad():
        out = model(x)
        feats = model.features(x)
        # Mean pooling over (T, H, W) of the normalised last stage, computed by hand.
        b = model.backbone
        tokens = b.norm(b.features(b.patch_embed(x.permute(0, 2, 1, 3, 4))))  # [N, t, h, w, D]
    torch.testing.assert_close(feats, tokens.mean(dim=(1, 2, 3)))
    assert set(out) == {"verb", "noun"} and model.heads == {"verb": 5, "noun": 7}
    assert feats.shape == (2, model.feature_dim) and model.feature_dim == 32
    for head, layer in model.head.items():
        torch.testing.assert_close(out[head], F.linear(feats, layer.weight, layer.bias))


def test_input_is_time_before_channels():
    """forward reads [N, T, C, H, W]: time-reversing the clip changes the output, and giving the
    backbone the permuted tensor directly reproduces it."""
    model = _tiny().eval()
    x = torch.randn(1, 4, 3, 16, 16)
    with torch.no_grad():
        out = model(x)["verb"]
        direct = model.head(model.backbone(x.permute(0, 2, 1, 3, 4)))["verb"]
        flipped = model(x.flip(1))["verb"]
    torch.testing.assert_close(out, direct)
    assert not torch.allclose(out, flipped, atol=1e-4)


def test_samples_in_a_batch_are_independent():
    model = _tiny().eval()
    x = torch.randn(3, 4, 3, 16, 16)
    with torch.no_grad():
        batch = model(x)["noun"]
        alone = torch.cat([model(x[i : i + 1])["noun"] for i in range(3)])
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_any_number_of_input_channels(channels):
    model = _tiny(in_channels=channels).eval()
    assert model.backbone.patch_embed.proj.weight.shape == (16, channels, 2, 4, 4)
    out = model(torch.randn(2, 4, channels, 16, 16))
    assert out["verb"].shape == (2, 5) and torch.isfinite(out["verb"]).all()


def test_wrong_input_layout_names_the_expected_shape():
    model = _tiny(in_channels=2)
    with pytest.raises(ValueError, match=r"\[N, T, C=2, H, W\].*\(1, 4, 3, 16, 16\)"):
        model(torch.randn(1, 4, 3, 16, 16))
    with pytest.raises(ValueError, match="C=2"):
        model(torch.randn(4, 2, 16, 16))


def test_drop_path_schedule_and_eval_determinism():
    model = _tiny(drop_path=0.3)
    probs = [m.stochastic_depth.p for m in model.modules() if hasattr(m, "stochastic_depth")]
    # Linear from 0 to drop_path over the blocks, as Video Swin's linspace(0, rate, depth).
    torch.testing.assert_close(torch.tensor(probs), torch.linspace(0, 0.3, 4))
    model.eval()
    x = torch.randn(2, 4, 3, 16, 16)
    torch.testing.assert_close(model(x)["verb"], model(x)["verb"])


def test_paper_presets():
    t = SWIN_PRESETS["swin_t"]
    assert t == dict(patch_size=(2, 4, 4), embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=(8, 7, 7))
    assert SWIN_PRESETS["swin_s"]["depths"] == (2, 2, 18, 2) and SWIN_PRESETS["swin_b"]["embed_dim"] == 128
    assert set(SWIN_PRESETS) == set(list_models("swin"))
    # Swin-T with the 400-class Kinetics head has the published parameter count.
    model = build_model(ModelConfig(arch="swin_t"), {"kinetics400": 400}, 3)
    assert sum(p.numel() for p in model.parameters()) == 28_158_070
    assert model.feature_dim == 768


def test_small_preset_learns_a_signal():
    """A few optimiser steps on random clips whose class is a learnable signal (mean brightness
    of one channel in the first frames) drive the loss down."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="swin_nano", drop_path=0.0), {"verb": 3}, 3)
    labels = torch.arange(12) % 3
    x = torch.randn(12, 4, 3, 16, 16) * 0.5
    x[:, :2, 0] += (labels.float() - 1).view(-1, 1, 1, 1) * 2.0
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = F.cross_entropy(model(x)["verb"], labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
