"""The allocator setting keeps a freed multi-MB clip buffer in the process (no page-faulting it in again)."""
from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = r"""
import sys
from egodistill.data.allocator import keep_freed_buffers
applied = keep_freed_buffers() if sys.argv[1] == "1" else None
import numpy as np

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

base = rss_mb()
for _ in range(4):  # float32 items (data.uint8_frames off) built and freed, as in a loader
    item = [np.ones((16, 3, 224, 224), np.float32), np.ones((16, 2, 224, 224), np.float32),
            np.ones((16, 3, 224, 224), np.float32)]  # 9.6 + 6.4 + 9.6 MB
    del item
print(applied, round(rss_mb() - base, 1))
"""


def _run(apply: bool) -> tuple[str, float]:
    out = subprocess.run([sys.executable, "-c", PROBE, "1" if apply else "0"], capture_output=True, text=True,
                         check=True, env={"PATH": "/usr/bin:/bin"}).stdout.split()
    return out[0], float(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_freed_clip_buffer_stays_in_the_process_only_with_the_setting():
    applied, kept = _run(True)
    assert applied == "True"
    assert kept > 20  # the item's 25 MB are still mapped, ready for the next item
    _, kept_default = _run(False)
    assert kept_default < 5  # glibc's default trims them: the next item page-faults them in again


def test_user_environment_wins(monkeypatch):
    import egodistill.data.allocator as allocator

    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000")
    assert allocator.keep_freed_buffers() is False
    assert allocator.keep_freed_buffers() is False  # idempotent
