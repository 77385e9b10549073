"""Every shipped config (configs/**/*.yaml) loads through the schema and says what it serves.

Each file must start with the command that runs it (`# egodistill <command> configs/<its path>`)
and a comment line saying what it reproduces; its annotation file keys must be ones its reader
accepts; a distillation config's teachers must be the run folders of the teacher configs shipped
beside it, trained on the same data with the same heads.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from egodistill import cli
from egodistill.config import load_config
from egodistill.data.annotations import READERS
from egodistill.models import list_models

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))
PAPER_FOLDERS = ("epic100", "ssv2", "something_else")


def subcommand_names() -> set[str]:
    for action in cli.build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def test_paper_configs_are_shipped():
    names = {p.relative_to(REPO / "configs").as_posix() for p in CONFIGS}
    for folder, teachers in (("epic100", ("rgb", "flow", "audio")), ("ssv2", ("rgb", "flow", "layout")),
                             ("something_else", ("rgb", "flow", "layout"))):
        for name in (*teachers, "distill"):
            assert f"{folder}/{name}.yaml" in names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(REPO / "configs").as_posix())
def test_config_loads_and_starts_with_its_command(path: Path):
    cfg = load_config(path)
    lines = path.read_text().splitlines()
    rel = path.relative_to(REPO).as_posix()
    m = re.match(r"# egodistill (\S+) (\S+)", lines[0])
    assert m, f"{rel}: first line must be '# egodistill <command> {rel}', got {lines[0]!r}"
    command, target = m.groups()
    assert target == rel, f"{rel}: first line names {target}"
    assert command in subcommand_names(), f"{rel}: '{command}' is not an egodistill subcommand"
    assert lines[1].startswith("# ") and len(lines[1]) > 20, f"{rel}: second line must say what it reproduces"
    assert cfg.data.reader in READERS
    reader = READERS[cfg.data.reader]
    valid = set(reader.split_keys + reader.other_keys)
    assert set(cfg.data.files) <= valid, f"{rel}: unknown file keys {set(cfg.data.files) - valid}"
    assert cfg.model.modality in cfg.data.stores, f"{rel}: no store for the model's modality"
    assert cfg.model.arch in list_models(), f"{rel}: no registered architecture '{cfg.model.arch}'"
    if command == "distill":
        assert cfg.distill.teachers, f"{rel}: a distillation config needs teachers"


@pytest.mark.parametrize("folder", PAPER_FOLDERS)
def test_paper_distill_configs_match_their_teachers(folder: str):
    here = REPO / "configs" / folder
    teachers = {load_config(p).run_dir: load_config(p) for p in here.glob("*.yaml") if "distill" not in p.stem}
    for path in here.glob("distill*.yaml"):
        cfg = load_config(path)
        assert cfg.model.modality == "rgb" and cfg.model.arch == "swin_t"
        assert sorted(cfg.distill.teachers) == sorted(teachers), f"{path.name}: teachers are not the shipped teacher runs"
        modalities = {teachers[t].model.modality for t in cfg.distill.teachers}
        assert "rgb" in modalities and len(modalities) == 3
        for t in cfg.distill.teachers:
            tcfg = teachers[t]
            # same annotations, frames and heads: the student is taught on the teachers' data
            assert tcfg.data.files == cfg.data.files and tcfg.data.reader == cfg.data.reader
            assert tcfg.data.num_frames == cfg.data.num_frames and tcfg.data.sampler == cfg.data.sampler
            assert tcfg.train.head_weights == cfg.train.head_weights
        # METHOD.md §10 and the authors' loss defaults
        assert cfg.optim.lr == 1e-4 and cfg.optim.weight_decay == 0.02 and cfg.optim.grad_clip == 5.0
        assert cfg.train.batch_size == 16 and cfg.data.num_frames == 16 and cfg.data.size == 224
        assert (cfg.distill.alpha_kd, cfg.distill.alpha_gt, cfg.distill.temperature) == (1.0, 0.0, 1.0)
        assert cfg.distill.consistent


def test_epic_fewer_frames_student_reads_every_second_frame():
    cfg = load_config(REPO / "configs" / "epic100" / "distill_8frames.yaml")
    assert cfg.model.frame_step == 2 and cfg.data.num_frames // cfg.model.frame_step == 8


def test_something_something_never_flips():
    # SSv2 labels name directions ("pushing something from left to right")
    for folder in ("ssv2", "something_else"):
        for path in (REPO / "configs" / folder).glob("*.yaml"):
            assert load_config(path).data.hflip is False, path
