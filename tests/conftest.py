"""Shared test fixtures: a tiny synthetic egocentric dataset, built once per test session.

    def test_something(synth_root, synth_config):
        synth_root                 # Path: annotations/*.csv, rgb.h5, flow.h5, audio.h5, layout.h5, ...
        synth_config.data.files    # EPIC-100 reader files, relative to synth_config.data.root
        synth_config.data.stores   # {"rgb": "rgb.h5", "flow": ..., "audio": ..., "layout": ...}

The dataset is `SynthConfig.tiny(seed=0)`: 5 videos of 32x32 frames (P01, P02 seen; P03 unseen,
validation only), 3 segments each, 4 verbs, 4 nouns, audio at 8 kHz. See docs/synthetic.md.

Real files (annotations of EPIC-KITCHENS-100, Something-Something v2 and Something-Else, the
Video Swin checkpoint key lists) lie under `FIXTURES`, inside the repository; test modules take
the path from here (`from conftest import FIXTURES`). Their sources, licenses and quirks:
tests/fixtures/real/README.md and tests/fixtures/video_swin/README.md.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from egodistill.config import Config, config_from_dict

#: tests/fixtures: the real annotation files (`real/`) and checkpoint key lists (`video_swin/`).
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the folder of a tiny synthetic dataset (built once per session, ~2 s)."""
    from egodistill.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("synth") / "tiny"
    generate(root, SynthConfig.tiny(seed=0), workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def synth_unlabelled_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the tiny dataset plus 3 unlabelled videos (`egodistill synth --tiny --unlabelled 3`:
    the same labelled videos, and `data.files.unlabelled`); built once per session, ~2 s."""
    import dataclasses

    from egodistill.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("synth_unlabelled") / "tiny"
    generate(root, dataclasses.replace(SynthConfig.tiny(seed=0), num_unlabelled=3), workers=1, progress=False)
    return root


@pytest.fixture
def synth_config(synth_root: Path) -> Config:
    """Return a fresh default `Config` whose data section is the tiny dataset's data.yaml."""
    with open(synth_root / "data.yaml") as f:
        return config_from_dict(yaml.safe_load(f))
