"""benchmarks/gpu.py: a clean one-line exit without CUDA; every row's code at tiny sizes on the CPU."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          env={"OMP_NUM_THREADS": "1", **__import__("os").environ})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only exit")
def test_without_cuda_it_says_so_in_one_line_and_exits_0():
    done = _run()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().count("\n") == 0 and "no CUDA device" in done.stdout


@pytest.mark.slow
def test_cpu_smoke_runs_every_row():
    done = _run("--cpu-smoke", "--peak-tflops", "1", "--peak-tflops-fp32", "1")
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and not line.startswith("| row")]
    assert len(rows) == 2 + 6  # CPU decode (1 worker), GPU decode; 3 steps x 2 precisions
    assert any("GPU decode" in r for r in rows) and sum("distill step" in r for r in rows) == 4
    assert all(r.rstrip(" |").endswith("%") for r in rows if "step" in r)  # MFU from the given peaks
