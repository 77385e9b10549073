"""Models: a registry of architectures (Video Swin, STLT, torchvision's video CNNs and MViT, small
3D CNNs), linear heads, checkpoint import, cost report.

    build_model(model_cfg, heads, in_channels) -> nn.Module   # forward -> {head: logits [N, classes]}
    list_models() / get_model_spec(name) / register_model     # the registry (`model.arch`)
    load_official_checkpoint(model, path_or_state_dict, *, strict=True) -> LoadReport
    model_cost(model, example_input) -> {"params", "gflops", "fwd_clips_s", "fwdbwd_clips_s"}
"""
from egodistill.models.build import build_model
from egodistill.models.checkpoints import CheckpointError, LoadReport, load_official_checkpoint, read_state_dict
from egodistill.models.cost import count_flops, model_cost
from egodistill.models.heads import LinearHeads
from egodistill.models.registry import ModelSpec, get_model_spec, list_models, register_model
from egodistill.models.stlt import STLT
from egodistill.models.swin import VideoSwin

__all__ = [
    "build_model",
    "CheckpointError",
    "LoadReport",
    "load_official_checkpoint",
    "read_state_dict",
    "count_flops",
    "model_cost",
    "LinearHeads",
    "ModelSpec",
    "get_model_spec",
    "list_models",
    "register_model",
    "STLT",
    "VideoSwin",
]
