"""Cost report: parameter and FLOP counts with known answers, clips/s, `egodistill info`."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from egodistill.cli import main
from egodistill.config import ModelConfig
from egodistill.models import build_model, count_flops, model_cost
from egodistill.models.swin import VideoSwin


class _Linear(nn.Module):
    """Mean over time then a linear layer: 2*in*out FLOPs per sample (plus no others counted)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"a": self.fc(x.mean(dim=1))}


def test_known_answer_for_a_linear_model():
    cost = model_cost(_Linear(), torch.randn(4, 3, 12), min_seconds=0.0, min_iters=1)
    assert cost["params"] == 12 * 5 + 5
    assert cost["gflops"] == pytest.approx(2 * 12 * 5 / 1e9)
    assert cost["fwd_clips_s"] > 0 and cost["fwdbwd_clips_s"] > 0


def test_swin_flops_are_per_view_and_match_a_hand_count_of_the_patch_embedding():
    torch.manual_seed(0)
    model = VideoSwin({"a": 3}, 2, patch_size=(2, 4, 4), embed_dim=8, depths=(1, 1), num_heads=(1, 2), window_size=(2, 2, 2))
    one, two = torch.randn(1, 4, 2, 16, 16), torch.randn(2, 4, 2, 16, 16)
    assert count_flops(model, two) == 2 * count_flops(model, one)
    # The patch embedding alone: tokens (2x4x4) x outputs (8) x kernel (2 ch x 2x4x4) multiply-adds.
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        model.backbone.patch_embed(one.permute(0, 2, 1, 3, 4))
    assert fc.get_total_flops() == 2 * (2 * 4 * 4) * 8 * (2 * 2 * 4 * 4)
    # Counting restores the attention path and the train/eval mode.
    model.train()
    model.set_sdpa(True)
    count_flops(model, one)
    assert model.training and model.sdpa


def test_swin_t_flops_at_16x224_match_the_published_figure():
    """Swin-T at 16x224 costs ~43.9 G multiply-adds (torchvision lists 43.882 GFLOPS, fvcore-style
    multiply-adds); flop_counter counts 2 FLOPs per multiply-add. Run on the meta device: no data."""
    with torch.device("meta"):
        model = build_model(ModelConfig(arch="swin_t"), {"verb": 97, "noun": 300}, 3)
        x = torch.empty(1, 16, 3, 224, 224)
    gflops = count_flops(model, x) / 1e9
    assert gflops / 2 == pytest.approx(43.88, rel=0.01)


def test_info_command_prints_the_table(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("data:\n  reader: epic100\n  num_frames: 4\n  size: 16\nmodel:\n  arch: swin_nano\n  pretrained: nowhere.pth\n")
    assert main(["info", str(cfg), "--seconds", "0", "--heads", "verb=4,noun=6"]) == 0
    out = capsys.readouterr().out
    model = build_model(ModelConfig(arch="swin_nano"), {"verb": 4, "noun": 6}, 3)
    params = sum(p.numel() for p in model.parameters())
    assert f"{params:,}" in out and "4x3x16x16" in out and "verb 4, noun 6" in out
    assert "fwd+bwd clips/s" in out
    # Flow reads data.flow_channels; STLT gets a layout input; defaults heads from the reader.
    assert main(["info", str(cfg), "model.modality=flow", "data.flow_channels=2", "--no-timing"]) == 0
    out = capsys.readouterr().out
    assert "4x2x16x16" in out and "verb 97, noun 300" in out and "clips/s" not in out
    assert main(["info", str(cfg), "model.arch=stlt_nano", "model.modality=layout",
                 "data.reader=ssv2", "--no-timing"]) == 0
    assert "action 174" in capsys.readouterr().out


def test_info_command_errors_are_one_line(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("model:\n  arch: swin_huge\n")
    assert main(["info", str(cfg), "--no-timing"]) == 1
    err = capsys.readouterr().err
    assert "swin_huge" in err and "swin_nano" in err and "Traceback" not in err


def test_stlt_flops_match_a_hand_count():
    """Post-norm encoder layer over L tokens of width D: qkv + out projections (4 D^2) and the
    4D-wide MLP (8 D^2) multiply-adds per token, plus Q K^T and P V (2 L^2 D); the fused
    inference fast path must not hide them."""
    from egodistill.models.stlt import STLT

    d, t, b = 16, 3, 4
    model = STLT({"a": 2}, hidden=d, num_heads=2, frame_layers=1, temporal_layers=1, max_frames=4)
    layout = {
        "boxes": torch.rand(1, t, b, 4), "category": torch.ones(1, t, b, dtype=torch.long),
        "score": torch.rand(1, t, b), "side": torch.zeros(1, t, b, dtype=torch.long),
        "state": torch.zeros(1, t, b, dtype=torch.long), "mask": torch.ones(1, t, b, dtype=torch.bool),
    }

    def layer(tokens: int) -> int:
        return 2 * (tokens * 12 * d * d + 2 * tokens * tokens * d)

    expected = t * layer(b + 1) + layer(t + 1)  # frame encoder per frame (CLS + boxes), temporal (frames + CLS)
    expected += 2 * t * b * (4 * d + d)  # box and score embeddings
    expected += 2 * d * 2  # the head
    assert count_flops(model, layout) == expected


def test_sdpa_and_explicit_attention_count_the_same_flops():
    torch.manual_seed(0)
    model = VideoSwin({"a": 3}, 3, patch_size=(2, 4, 4), embed_dim=8, depths=(2,), num_heads=(2,), window_size=(2, 2, 2))
    x = torch.randn(1, 4, 3, 16, 16)
    from torch.utils.flop_counter import FlopCounterMode

    from egodistill.models.cost import _CUSTOM_FLOPS

    counts = []
    for sdpa in (False, True):
        model.set_sdpa(sdpa)
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_CUSTOM_FLOPS) as fc:
            model(x)
        counts.append(fc.get_total_flops())
    assert counts[0] == counts[1] > 0
