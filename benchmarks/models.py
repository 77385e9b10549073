"""Cost of the models on this machine: parameters, GFLOPs per view, clips/s forward and fwd+bwd.

Each architecture on the view it is meant for. For each Swin preset both window-attention paths
are measured (torchvision's explicit matmuls and `F.scaled_dot_product_attention`); the table's last column says which is faster and by how
much, which is how `VideoSwin`'s default (`sdpa=True`) was chosen. GFLOPs are
`torch.utils.flop_counter` FLOPs (a multiply-add counts 2; Video Swin's paper quotes multiply-adds,
i.e. half) per view of the given size.

    python benchmarks/models.py                         # Swin-T 16x224, small presets, STLT, CNNs
    python benchmarks/models.py --archs swin_nano cnn3d_micro --seconds 2
"""
from __future__ import annotations

import argparse

import torch

from egodistill.config import ModelConfig
from egodistill.models import build_model, model_cost
from egodistill.models.stlt import example_layout

# architecture -> (frames, size, batch) of the view it is meant for.
VIEWS = {
    "swin_t": (16, 224, 1),
    "swin_micro": (8, 48, 8),
    "swin_nano": (8, 32, 8),
    "stlt": (16, 0, 4),
    "stlt_small": (16, 0, 16),
    "stlt_nano": (16, 0, 16),
    "cnn3d_nano": (8, 48, 8),
    "cnn3d_micro": (8, 48, 8),
    "x3d_nano": (8, 48, 8),
    "r3d_18": (16, 112, 1),
    "r2plus1d_18": (16, 112, 1),
    "s3d": (16, 224, 1),
}
HEADS = {"verb": 97, "noun": 300}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", nargs="+", default=list(VIEWS), choices=list(VIEWS))
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum seconds per timing")
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    header = f"{'arch':<11} {'view':<14} {'batch':>5} {'params (M)':>10} {'GFLOPs/view':>11} {'attention':<9} {'fwd clips/s':>11} {'fwd+bwd clips/s':>15}"
    print(header)
    print("-" * len(header))
    for arch in args.archs:
        frames, size, batch = VIEWS[arch]
        torch.manual_seed(0)
        model = build_model(ModelConfig(arch=arch, drop_path=0.0), HEADS, 3)
        if not size:  # a layout model
            x, view, paths = example_layout(batch, frames, 14), f"{frames}x14 boxes", [None]
        else:
            x, view = torch.randn(batch, frames, 3, size, size), f"{frames}x3x{size}x{size}"
            paths = [False, True] if hasattr(model, "set_sdpa") else [None]
        results = {}
        for sdpa in paths:
            if sdpa is not None:
                model.set_sdpa(sdpa)
            cost = model_cost(model, x, min_seconds=args.seconds)
            results[sdpa] = cost
            path = "-" if sdpa is None else ("sdpa" if sdpa else "explicit")
            print(
                f"{arch:<11} {view:<14} {batch:>5} {cost['params'] / 1e6:>10.2f} {cost['gflops']:>11.3f} "
                f"{path:<9} {cost['fwd_clips_s']:>11.2f} {cost['fwdbwd_clips_s']:>15.2f}",
                flush=True,
            )
        if len(results) == 2:
            f = results[True]["fwd_clips_s"] / results[False]["fwd_clips_s"]
            b = results[True]["fwdbwd_clips_s"] / results[False]["fwdbwd_clips_s"]
            print(f"{'':<11} sdpa / explicit: forward x{f:.2f}, fwd+bwd x{b:.2f}")


if __name__ == "__main__":
    main()
