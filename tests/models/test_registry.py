"""Every registered architecture: forward shape, one training step, checkpoint round trip, and a
`model.pretrained` file load; torchvision's own weight files give torchvision's outputs."""
from __future__ import annotations

import pytest
import torch
from torchvision.models import video as tv

from egodistill.config import ModelConfig
from egodistill.engine.checkpoint import load_weights, save_weights
from egodistill.models import build_model, get_model_spec, list_models, register_model
from egodistill.models.checkpoints import CheckpointError, load_official_checkpoint
from egodistill.models.stlt import example_layout

HEADS = {"verb": 3, "noun": 4}
# A small view each architecture accepts: (frames, size). S3D pools a final 2x7x7 map (16x224
# input); torchvision builds MViT for 16x224 clips only; the ResNets' last batch norms need more
# than one position per clip to be smooth in the weights.
VIEWS = {"s3d": (16, 224), "mvit_v2_s": (16, 224), "r3d_18": (8, 64), "mc3_18": (8, 64), "r2plus1d_18": (8, 64)}
HEAVY = {"s3d", "swin_b", "swin_s", "swin_t", "swin_micro", "mvit_v2_s", "r3d_18", "r2plus1d_18", "mc3_18", "stlt",
         "stlt_small", "x3d_nano"}
LIGHT = [a for a in list_models() if a not in HEAVY]


def _input(arch: str, batch: int = 2, channels: int = 3):
    if get_model_spec(arch).reads == "layout":
        return example_layout(batch, 4, 5)
    frames, size = VIEWS.get(arch, (4, 32))
    return torch.randn(batch, frames, channels, size, size, generator=torch.Generator().manual_seed(0))


def _model(arch: str, channels: int = 3, **cfg):
    torch.manual_seed(0)
    modality = "layout" if get_model_spec(arch).reads == "layout" else "rgb"
    return build_model(ModelConfig(arch=arch, modality=modality, drop_path=0.0, **cfg), HEADS, channels)


def _check_architecture(arch: str, tmp_path) -> None:
    model = _model(arch)
    x = _input(arch)
    out = model(x)
    assert {h: tuple(v.shape) for h, v in out.items()} == {"verb": (2, 3), "noun": (2, 4)}

    # one small optimiser step lowers the loss on the same batch (same dropout masks, same
    # batch-norm statistics: the loss is a fixed function of the weights)
    target = torch.tensor([0, 2])
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train()
    losses = []
    for _ in range(2):
        torch.manual_seed(0)
        loss = torch.nn.functional.cross_entropy(model(x)["verb"], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[1] < losses[0], f"{arch}: one step did not lower the loss ({losses})"

    # checkpoint round trip through the run's weight file, and as `model.pretrained`
    model.eval()
    path = tmp_path / f"{arch}.safetensors"
    save_weights(model, path)
    again = _model(arch)
    load_weights(again, path)
    again.eval()
    with torch.no_grad():
        ref = model(x)
        for h, v in again(x).items():
            torch.testing.assert_close(v, ref[h])
        pretrained = _model(arch, pretrained=str(path)).eval()
        for h, v in pretrained(x).items():
            torch.testing.assert_close(v, ref[h])


@pytest.mark.parametrize("arch", LIGHT)
def test_architecture_forward_step_round_trip_and_pretrained_load(arch, tmp_path):
    _check_architecture(arch, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(HEAVY))
def test_heavy_architecture_forward_step_round_trip_and_pretrained_load(arch, tmp_path):
    _check_architecture(arch, tmp_path)


def test_every_registered_architecture_is_covered():
    assert set(LIGHT) | HEAVY == set(list_models())
    assert {"r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v2_s", "cnn3d_nano", "cnn3d_micro", "x3d_nano"} <= set(list_models())


@pytest.mark.parametrize("arch", ["cnn3d_nano", "x3d_nano", "swin_nano", "r3d_18"])
def test_clip_models_read_any_channel_count(arch):
    model = _model(arch, channels=2).eval()
    assert model(_input(arch, channels=2))["verb"].shape == (2, 3)
    with pytest.raises(ValueError, match="C=2"):
        model(_input(arch, channels=3))


def test_registering_a_name_twice_fails():
    with pytest.raises(ValueError, match="registered twice"):
        register_model("cnn3d_nano", family="test")(lambda heads, in_channels, **kw: None)


def _torchvision_file(tmp_path, name: str, **kwargs) -> tuple[torch.nn.Module, str]:
    torch.manual_seed(1)
    reference = getattr(tv, name)(**kwargs).eval()
    path = tmp_path / f"{name}.pth"
    torch.save(reference.state_dict(), path)
    return reference, str(path)


@pytest.mark.parametrize("name", ["r3d_18", "mc3_18", "r2plus1d_18"])
def test_torchvision_weight_file_gives_torchvisions_outputs(name, tmp_path):
    reference, path = _torchvision_file(tmp_path, name)
    ours = build_model(ModelConfig(arch=name, pretrained=path), {"kinetics400": 400}, 3).eval()
    x = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)["kinetics400"], reference(x.transpose(1, 2)), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name, frames, size", [("s3d", 16, 224), ("mvit_v2_s", 16, 224)])
def test_torchvision_weight_file_gives_torchvisions_outputs_s3d_mvit(name, frames, size, tmp_path):
    reference, path = _torchvision_file(tmp_path, name)
    ours = build_model(ModelConfig(arch=name, pretrained=path), {"kinetics400": 400}, 3).eval()
    x = torch.randn(1, frames, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)["kinetics400"], reference(x.transpose(1, 2)), rtol=1e-4, atol=1e-5)


def test_torchvision_file_adapts_the_first_conv_and_reports(tmp_path):
    reference, path = _torchvision_file(tmp_path, "r3d_18")
    cfg = ModelConfig(arch="r3d_18", pretrained=path)
    flow = build_model(cfg, {"verb": 5}, 2)  # the Kinetics classifier has no head here: skipped
    rgb_weight = reference.state_dict()["stem.0.weight"]
    torch.testing.assert_close(flow.state_dict()["backbone.stem.0.weight"],
                               rgb_weight.mean(dim=1, keepdim=True).expand(-1, 2, -1, -1, -1))
    report = load_official_checkpoint(build_model(ModelConfig(arch="r3d_18"), {"verb": 5}, 2), path)
    assert report.format == "torchvision" and report.ok
    assert any("3 input channels -> 2" in a for a in report.adapted)
    assert report.skipped == ["cls_head.fc_cls.weight [400, 512]", "cls_head.fc_cls.bias [400]"]
    assert report.new_heads == ["head.verb.weight", "head.verb.bias"]


def test_torchvision_file_of_another_network_fails_strictly(tmp_path):
    _, path = _torchvision_file(tmp_path, "mc3_18")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        build_model(ModelConfig(arch="r2plus1d_18", pretrained=path), {"verb": 5}, 3)
    with pytest.raises(CheckpointError, match="torchvision checkpoint cannot initialise a VideoSwin"):
        build_model(ModelConfig(arch="swin_nano", pretrained=path), {"verb": 5}, 3)


def test_mvit_names_the_one_clip_shape_it_reads():
    model = build_model(ModelConfig(arch="mvit_v2_s"), HEADS, 3)
    with pytest.raises(ValueError, match="exactly 16 frames of 224x224"):
        model(torch.randn(1, 8, 3, 112, 112))
