"""`egodistill export RUN --format onnx|torchscript|exported-program [--out FILE]`: the student for deployment."""
from __future__ import annotations

import argparse

ORDER = 65


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a run's RGB student as ONNX, TorchScript or a torch.export program, with a sidecar",
        description=(
            "Write the run's RGB model as one file that reads clips float32 [N, T, 3, S, S] (N dynamic) and returns "
            "one logits tensor per head, and beside it FILE.json: class names per head, frames, size, channel "
            "order, normalisation and the frame sampling of the run's test views, so that the file alone is enough "
            "to run it (egodistill predict VIDEO --model FILE). Before the file is put in place its logits are "
            "compared with PyTorch's on random clips (batch sizes 1 and 3) and, with --check-video, on real clips; "
            "a difference above 1e-4 is an error. ONNX files are checked in ONNX Runtime and need the [export] "
            "extra (pip install 'egodistill[export]'). Layout (STLT) teachers are not video students and are refused."
        ),
    )
    p.add_argument("run", help="run folder of an RGB model (train or distill)")
    p.add_argument("--format", choices=["onnx", "torchscript", "exported-program"], default="onnx",
                   help="file format (default onnx)")
    p.add_argument("--out", help="output file (default RUN/export/<run name>.onnx, .torchscript.pt or .pt2)")
    p.add_argument("--weights", choices=["best", "last"], default="best", help="which weights of the run")
    p.add_argument("--check-video", metavar="VIDEO", help="also compare on the test views of this video's first 2 s")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from egodistill.engine.checkpoint import LAST_DIR, WEIGHTS_FILE
    from egodistill.engine.export import export_run

    weights = Path(args.run) / LAST_DIR / WEIGHTS_FILE if args.weights == "last" else None
    result = export_run(args.run, args.format, args.out, weights=weights, check_video=args.check_video)
    print(f"wrote {result.path} ({result.path.stat().st_size / 1e6:.1f} MB) and {result.sidecar}; "
          f"max |logit difference| vs PyTorch {result.max_abs_diff:.2g} over {result.checked} clips")
    return 0
