"""Cost of a model: parameters, GFLOPs per view (torch.utils.flop_counter) and measured clips/s."""
from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

Input = torch.Tensor | dict[str, torch.Tensor]


def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of SDPA's CPU flash kernel (flop_counter registers only the GPU kernels):
    Q K^T and P V, each 2 * L * S * E per (batch, head)."""
    *batch, length, e = query_shape
    source, ev = key_shape[-2], value_shape[-1]
    n = 1
    for d in batch:
        n *= d
    return 2 * n * length * source * (e + ev)


_CUSTOM_FLOPS = {}
if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
    _CUSTOM_FLOPS[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = _sdpa_cpu_flops


def _batch_size(x: Input) -> int:
    return int(x.shape[0] if isinstance(x, torch.Tensor) else next(iter(x.values())).shape[0])


def count_params(model: nn.Module) -> int:
    """Return the number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, example_input: Input) -> int:
    """Return the FLOPs of one forward pass over `example_input` (whole batch), as counted by
    `torch.utils.flop_counter` (a multiply-add is 2 FLOPs; papers that quote fvcore "FLOPs"
    count multiply-adds, i.e. half of this). Window attention runs on its explicit path while
    counting so its matmuls are seen whatever kernel SDPA would pick, and nn.TransformerEncoder's
    fused inference fast path (invisible to the counter) is switched off while counting."""
    was_training, sdpa = model.training, getattr(model, "sdpa", None)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    model.eval()
    try:
        if sdpa is not None:
            model.set_sdpa(False)
        torch.backends.mha.set_fastpath_enabled(False)
        with FlopCounterMode(display=False, custom_mapping=_CUSTOM_FLOPS) as counter:
            model(example_input)
        return int(counter.get_total_flops())
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        if sdpa is not None:
            model.set_sdpa(sdpa)
        model.train(was_training)


def _time(step, min_seconds: float, min_iters: int) -> float:
    """Return seconds per call of `step` after two warm-up calls (the first call of a kernel
    with new shapes pays one-off set-up costs)."""
    step()
    step()
    n, start = 0, time.perf_counter()
    while True:
        step()
        n += 1
        elapsed = time.perf_counter() - start
        if n >= min_iters and elapsed >= min_seconds:
            return elapsed / n


def _loss(out: Any) -> torch.Tensor:
    if isinstance(out, dict):
        return sum(v.float().mean() for v in out.values())
    return out.float().mean()


def model_cost(model: nn.Module, example_input: Input, *, min_seconds: float = 1.0, min_iters: int = 3) -> dict[str, float]:
    """Return {"params", "gflops" (per view, i.e. per sample of the batch), "fwd_clips_s"
    (inference, no grad), "fwdbwd_clips_s" (training step without the optimiser)} measured on
    this machine with `example_input` (a clip batch [N, T, C, H, W] or a layout dict)."""
    n = _batch_size(example_input)
    flops = count_flops(model, example_input)
    was_training = model.training

    def fwd() -> None:
        with torch.no_grad():
            model(example_input)

    def fwdbwd() -> None:
        model.zero_grad(set_to_none=True)
        _loss(model(example_input)).backward()

    try:
        model.eval()
        t_fwd = _time(fwd, min_seconds, min_iters)
        model.train()
        t_bwd = _time(fwdbwd, min_seconds, min_iters)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return {
        "params": count_params(model),
        "gflops": flops / n / 1e9,
        "fwd_clips_s": n / t_fwd,
        "fwdbwd_clips_s": n / t_bwd,
    }
