"""Export a run's RGB student as ONNX, TorchScript or a torch.export program, with a sidecar.

    export_run(run_dir, "onnx", out="student.onnx")  ->  student.onnx + student.onnx.json

The exported graph reads clips `clips: float32 [N, T, 3, S, S]` (N dynamic; RGB, values
`(v / 255 - mean) / std` per channel) and returns one logits tensor per head, named after the
head, in `outputs` order. The sidecar JSON beside it holds everything else needed to run it
from a video file alone: class names per head, frames, size, channel order, normalisation and
the frame sampling of the run's test views (`sidecar(...)` documents every field).

Before the file is put in place, it is run (ONNX: with ONNX Runtime) on random clips of batch
sizes 1 and 3 and on any real clips given, and its logits are compared with the PyTorch
model's; a difference above `tolerance` (1e-4, fp32) is an error and nothing is written. Video
Swin is exported through its explicit window attention (the same numbers as the SDPA path it
trains with; its cyclic shift becomes slices and concatenations, its masks constants).

`load_exported(path)` returns a `Predictor` for `egodistill predict --model FILE`.
"""
from __future__ import annotations

import contextlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from egodistill.atomic import atomic_path
from egodistill.config import DataConfig
from egodistill.data.records import DatasetInfo
from egodistill.data.views import normalize_uint8
from egodistill.engine.predict import ClipSpec

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "exported-program": ".pt2"}
SIDECAR_FORMAT = "egodistill-export"
SIDECAR_VERSION = 1
INPUT_NAME = "clips"
TOLERANCE = 1e-4


class MissingDependency(ValueError):
    """An optional dependency (the `[export]` extra) is not installed; the message says what to install."""


def require_onnx(need_export: bool = True) -> Any:
    """Return the `onnxruntime` module; raise MissingDependency naming the missing packages of the
    `[export]` extra (onnx and onnxscript are needed to write ONNX files, onnxruntime to run them)."""
    names = ["onnx", "onnxscript", "onnxruntime"] if need_export else ["onnxruntime"]
    missing = []
    for name in names:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingDependency(
            f"ONNX {'export' if need_export else 'inference'} needs {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed: pip install 'egodistill[export]' "
            f"(or pip install {' '.join(missing)})")
    import onnxruntime

    return onnxruntime


def default_output(run_dir: str | os.PathLike, fmt: str) -> Path:
    """Return `<run>/export/<run name><suffix of fmt>`."""
    run_dir = Path(run_dir)
    return run_dir / "export" / f"{run_dir.resolve().name}{FORMATS[fmt]}"


def sidecar_path(path: str | os.PathLike) -> Path:
    """Return the sidecar of an exported file: `<file>.json`."""
    path = Path(path)
    return path.with_name(path.name + ".json")


class HeadsAsTuple(nn.Module):
    """A model with `{head: logits}` outputs as a module returning the logits in `names` order."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, list(names)

    def forward(self, clips: Tensor) -> tuple[Tensor, ...]:
        out = self.model(clips)
        return tuple(out[h] for h in self.names)


# ---------------------------------------------------------------------------------------------
# Sidecar
# ---------------------------------------------------------------------------------------------


def sidecar(spec: ClipSpec, fmt: str, file_name: str, heads: list[str], *, arch: str, check: dict[str, Any],
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the sidecar record of an exported student (JSON-ready).

    `input`: the tensor the file reads (name, layout NTCHW, dtype, frames, height, width,
    channels, channel order RGB, `normalization`: value = (v / 255 - mean[c]) / std[c] for 8-bit
    v, batch dynamic). `outputs`: head names in output order, each with its class names (index =
    class id); logits, softmax gives probabilities. `action_heads`: the (verb, noun) pair scored
    as actions (p(verb) * p(noun), EPIC), or null. `sampling`: how a clip's views are taken from
    a video (frames at the file's own rate; `sampler`, `num_frames`, `stride`, then every
    `frame_step`-th frame; `test_clips` clips x `test_crops` crops of the short side resized to
    `size`; logits averaged over the views). `check`: the export's agreement with PyTorch.
    `extra`: further keys; `export_run` adds `run` (the run folder's name) and `temperature`
    ({head: T} of `egodistill calibrate`, already folded into the logits, or null).
    """
    d = spec.data
    record = {
        "format": SIDECAR_FORMAT,
        "version": SIDECAR_VERSION,
        "file": file_name,
        "file_format": fmt,
        "arch": arch,
        "dataset": spec.info.name,
        "input": {
            "name": INPUT_NAME, "layout": "NTCHW", "dtype": "float32", "batch": "dynamic",
            "frames": spec.input_frames, "channels": 3, "height": d.size, "width": d.size, "channel_order": "RGB",
            "normalization": {"formula": "(v / 255 - mean[c]) / std[c]", "mean": list(spec.mean),
                              "std": list(spec.std)},
        },
        "outputs": [{"name": h, "classes": spec.info.heads[h]} for h in heads],
        "action_heads": list(spec.info.action_heads) if spec.info.action_heads else None,
        "sampling": {
            "fps": "the video's own frame rate", "sampler": d.sampler, "num_frames": d.num_frames,
            "stride": d.stride, "frame_step": spec.frame_step, "test_clips": d.test_clips,
            "test_crops": d.test_crops, "size": d.size, "decode_short_side": 256,
            "frames_rule": ("dense: clip k of a window of n frames starts at int(k*a + a/2), a = (n - num_frames*stride "
                            "+ 1) / test_clips (0 when n < num_frames*stride), and reads every stride-th frame, the "
                            "last frame repeating past the end; uniform: num_frames*test_clips equal parts, the "
                            "middle frame of each"),
            "crops": ("frames decoded with the short side at decode_short_side (never upscaled); crop = a square as "
                      "large as the short side: 1 crop the centre, 3 crops the start, centre and end of the long "
                      "side; resized to size x size, bilinear"),
            "aggregate": "mean of logits over the test_clips x test_crops views",
            "window": "egodistill predict --window W --hop H: windows [k*H, k*H + W) seconds, each sampled as a clip",
            "reference": "egodistill.data.sampling.sample_frame_indices(train=False), egodistill.data.views.test_views",
        },
        "check": check,
        "torch": torch.__version__,
    }
    record.update(extra or {})
    return record


def spec_from_sidecar(data: Any, source: str) -> tuple[ClipSpec, list[str], str]:
    """Return (ClipSpec, output head names, file format) of a sidecar record; ValueError naming `source`."""
    try:
        if data.get("format") != SIDECAR_FORMAT:
            raise ValueError(f"'format' is {data.get('format')!r}, expected {SIDECAR_FORMAT!r}")
        inp, smp = data["input"], data["sampling"]
        norm = inp["normalization"]
        heads = {o["name"]: [str(c) for c in o["classes"]] for o in data["outputs"]}
        action = tuple(data["action_heads"]) if data.get("action_heads") else None
        info = DatasetInfo(name=str(data.get("dataset", "")), heads=heads, action_heads=action)
        dcfg = DataConfig(sampler=smp["sampler"], num_frames=int(smp["num_frames"]), stride=int(smp["stride"]),
                          size=int(smp["size"]), test_clips=int(smp["test_clips"]), test_crops=int(smp["test_crops"]))
        spec = ClipSpec(dcfg, int(smp["frame_step"]), tuple(float(m) for m in norm["mean"]),
                        tuple(float(s) for s in norm["std"]), info)
        if spec.input_frames != int(inp["frames"]):
            raise ValueError(f"input frames {inp['frames']} do not match sampling ({spec.input_frames})")
        return spec, list(heads), str(data["file_format"])
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise ValueError(f"{source}: not an egodistill export sidecar ({type(e).__name__}: {e})") from None


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------


@dataclass
class ExportResult:
    path: Path
    sidecar: Path
    max_abs_diff: float
    checked: int  # clips compared


@contextlib.contextmanager
def explicit_attention(model: nn.Module):
    """Route Video Swin's attention through torchvision's explicit path while exporting."""
    if not hasattr(model, "set_sdpa"):
        yield model
        return
    before = bool(getattr(model, "sdpa", True))
    model.set_sdpa(False)
    try:
        yield model
    finally:
        model.set_sdpa(before)


def _quiet():
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def write_model(model: nn.Module, heads: list[str], fmt: str, path: Path, example: Tensor) -> None:
    """Write `model` (eval mode, CPU) in `fmt` to `path`, batch dimension dynamic."""
    wrapper = HeadsAsTuple(model, heads).eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.no_grad(), explicit_attention(model), _quiet():
        if fmt == "onnx":
            require_onnx()
            import logging

            logging.getLogger("torch.onnx").setLevel(logging.ERROR)
            with contextlib.redirect_stdout(open(os.devnull, "w")):
                program = torch.onnx.export(wrapper, (example,), dynamo=True, input_names=[INPUT_NAME],
                                            output_names=heads, dynamic_shapes=({0: batch},), verbose=False)
                program.save(str(path), external_data=False)
        elif fmt == "torchscript":
            traced = torch.jit.trace(wrapper, (example,), check_trace=False)
            torch.jit.save(traced, str(path))
        elif fmt == "exported-program":
            program = torch.export.export(wrapper, (example,), dynamic_shapes=({0: batch},), strict=False)
            torch.export.save(program, str(path))
        else:
            raise ValueError(f"unknown export format {fmt!r}: expected one of {', '.join(FORMATS)}")


def random_clips(spec: ClipSpec, batch: int, seed: int) -> Tensor:
    """Return `batch` random 8-bit clips normalised as the model reads them: [batch, T', 3, S, S]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (batch, spec.input_frames, 3, spec.data.size, spec.data.size), generator=g,
                      dtype=torch.uint8)
    return normalize_uint8(x, spec.mean, spec.std)


def model_clips(spec: ClipSpec, clips: Tensor) -> Tensor:
    """Return 8-bit view clips [B, V, T, 3, S, S] as the model's input [B*V, T', 3, S, S]."""
    x = clips.reshape(-1, *clips.shape[2:])[:, ::spec.frame_step]
    return normalize_uint8(x, spec.mean, spec.std)


def compare(predictor_run, model: nn.Module, heads: list[str], inputs: list[Tensor], what: str,
            tolerance: float = TOLERANCE) -> tuple[float, int]:
    """Return (max abs logit difference, clips compared) of the exported model against `model` on
    `inputs`; raise ValueError when it exceeds `tolerance`."""
    worst, n = 0.0, 0
    for x in inputs:
        with torch.no_grad():
            ref = model(x)
        got = predictor_run(x)
        for h, z in zip(heads, got):
            z = torch.as_tensor(np.asarray(z))
            if z.shape != ref[h].shape:
                raise ValueError(f"{what}: head '{h}' gives shape {tuple(z.shape)} for a batch of {x.shape[0]}, "
                                 f"PyTorch {tuple(ref[h].shape)}")
            worst = max(worst, float((z.float() - ref[h].float()).abs().max()))
        n += x.shape[0]
    if not worst <= tolerance:
        raise ValueError(f"{what}: the exported model's logits differ from PyTorch's by up to {worst:.3g} "
                         f"(allowed {tolerance:g} in fp32); nothing was written")
    return worst, n


def export_model(model: nn.Module, spec: ClipSpec, fmt: str, out: str | os.PathLike, *, arch: str,
                 real_clips: Tensor | None = None, tolerance: float = TOLERANCE,
                 extra: dict[str, Any] | None = None) -> ExportResult:
    """Export `model` (clips [N, T', 3, S, S] -> {head: logits}) with its sidecar; see the module docstring.

    `real_clips`: 8-bit views [B, V, T, 3, S, S] (e.g. from a video) compared besides random clips.
    Both files are written to temporary names and renamed into place after the check passes.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: expected one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.is_dir():
        raise IsADirectoryError(f"{out} is a folder; give the exported file's name (e.g. student{FORMATS[fmt]})")
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    heads = list(model.heads)
    missing = [h for h in heads if h not in spec.info.heads]
    if missing:
        raise ValueError(f"the model's heads {missing} have no class names in the run's info.json "
                         f"(heads there: {list(spec.info.heads)})")
    # the model is renamed into place first, then its sidecar; the suffix kept: torch.export.load wants .pt2
    with atomic_path(sidecar_path(out), keep_suffix=True) as side_tmp, atomic_path(out, keep_suffix=True) as tmp:
        write_model(model, heads, fmt, tmp, random_clips(spec, 2, seed=0))
        run = load_runner(tmp, fmt, heads)
        inputs = [random_clips(spec, 1, seed=1), random_clips(spec, 3, seed=2)]
        if real_clips is not None:
            inputs.append(model_clips(spec, real_clips))
        worst, n = compare(run, model, heads, inputs, str(out), tolerance)
        check = {"max_abs_diff": worst, "tolerance": tolerance, "clips": n, "batch_sizes": [x.shape[0] for x in inputs],
                 "real_clips": 0 if real_clips is None else int(real_clips.shape[0] * real_clips.shape[1]),
                 "runtime": "onnxruntime " + require_onnx(False).__version__ if fmt == "onnx" else "torch"}
        record = sidecar(spec, fmt, out.name, heads, arch=arch, check=check, extra=extra)
        side_tmp.write_text(json.dumps(record, indent=1, allow_nan=False), encoding="utf-8")
    return ExportResult(out, sidecar_path(out), worst, n)


def export_run(run_dir: str | os.PathLike, fmt: str = "onnx", out: str | os.PathLike | None = None, *,
               weights: str | os.PathLike | None = None, check_video: str | os.PathLike | None = None,
               tolerance: float = TOLERANCE) -> ExportResult:
    """Export a run's RGB model (see `export_model`); `check_video`: also compare on the test views
    of the first window (up to 2 s) of this video."""
    from egodistill.engine.calibration import apply_run_calibration
    from egodistill.engine.checkpoint import load_run
    from egodistill.models.registry import get_model_spec

    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: expected one of {', '.join(FORMATS)}")
    cfg, model, info = load_run(run_dir, weights=weights)
    temps = apply_run_calibration(model, run_dir, weights)
    reads_layout = get_model_spec(cfg.model.arch).reads == "layout"
    if cfg.model.modality != "rgb" or reads_layout:
        raise ValueError(f"{run_dir}: export writes RGB video students; this run's model is {cfg.model.arch} "
                         f"reading '{cfg.model.modality}' ({'hand/object layouts, not video frames' if reads_layout else 'not RGB frames'}), "
                         f"which is a teacher, not a student to deploy")
    spec = ClipSpec.from_run(cfg, info)
    real = video_clips(check_video, spec) if check_video else None
    return export_model(model, spec, fmt, out or default_output(run_dir, fmt), arch=cfg.model.arch,
                        real_clips=real, tolerance=tolerance,
                        extra={"run": str(Path(run_dir).resolve().name), "temperature": temps or None})


def video_clips(path: str | os.PathLike, spec: ClipSpec, seconds: float = 2.0) -> Tensor:
    """Return the 8-bit test views [1, V, T, 3, S, S] of the first `seconds` of a video file."""
    from egodistill.engine.predict import clip_views
    from egodistill.engine.stream import VideoReader, windows

    reader = VideoReader(Path(path))
    try:
        first = next(iter(windows(reader, seconds, seconds, reader.frame_seconds())))
    finally:
        reader.close()
    return clip_views(first.frames, spec.data)[None]


# ---------------------------------------------------------------------------------------------
# Running an exported file
# ---------------------------------------------------------------------------------------------


def load_runner(path: Path, fmt: str, heads: list[str], device: str = "cpu"):
    """Return `run(x float32 [N, T', 3, S, S]) -> list of logits per head` for an exported file."""
    if fmt == "onnx":
        ort = require_onnx(False)
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ValueError(f"--device {device}: this onnxruntime has no CUDA provider "
                                 f"(install onnxruntime-gpu), or use --device cpu")
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        # Idle worker threads sleep instead of spinning: on a shared CPU a spinning pool takes the
        # cores from the decoder and from other processes between batches.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            raise ValueError(f"{path}: ONNX Runtime cannot load it ({e})") from None
        names = [o.name for o in session.get_outputs()]
        order = [names.index(h) for h in heads] if set(heads) <= set(names) else list(range(len(names)))

        def run(x: Tensor) -> list[np.ndarray]:
            got = session.run(None, {INPUT_NAME: x.detach().cpu().numpy()})
            return [got[i] for i in order]

        return run
    try:
        with _quiet():
            if fmt == "torchscript":
                module = torch.jit.load(str(path), map_location=device)
            elif fmt == "exported-program":
                module = torch.export.load(str(path)).module().to(device)
            else:
                raise ValueError(f"{path}: unknown export format {fmt!r}: expected one of {', '.join(FORMATS)}")
    except (RuntimeError, OSError, KeyError) as e:
        raise ValueError(f"{path}: cannot be loaded as {fmt} ({type(e).__name__}: {e})") from None

    def run_torch(x: Tensor) -> list[Tensor]:
        with torch.no_grad():
            return [z.cpu() for z in module(x.to(device))]

    return run_torch


class ExportedPredictor:
    """An exported student (file + sidecar) as a `Predictor`: 8-bit views in, view-averaged logits out."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu"):
        path = Path(path)
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a folder; give an exported model file (e.g. student.onnx)")
        if not path.is_file():
            raise FileNotFoundError(f"exported model not found: {path}")
        side = sidecar_path(path)
        if not side.is_file():
            raise FileNotFoundError(f"{side}: missing; an exported model runs with the sidecar that "
                                    f"`egodistill export` writes beside it")
        try:
            data = json.loads(side.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{side}: not a readable JSON file ({e})") from None
        self.spec, self.heads, fmt = spec_from_sidecar(data, str(side))
        self.path, self.format, self.sidecar = path, fmt, data
        self._run = load_runner(path, fmt, self.heads, device)

    def __call__(self, clips: Tensor) -> dict[str, Tensor]:
        b = clips.shape[0]
        outs = self._run(model_clips(self.spec, clips))
        return {h: torch.as_tensor(np.asarray(z)).float().view(b, -1, z.shape[-1]).mean(1)
                for h, z in zip(self.heads, outs)}


def load_exported(path: str | os.PathLike, device: str = "cpu") -> ExportedPredictor:
    """Return the `Predictor` of an exported file and its sidecar."""
    return ExportedPredictor(path, device)

