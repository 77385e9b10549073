"""Run folders: what may be deleted, when a run may start in one, and cleaning up a failed start.

A run folder (`runs/<name>/`, docs/architecture.md "Run folders") is written by `train` and
`distill`. Nothing is deleted unless it is an old run folder that holds none of the new run's
inputs, and only once the new run's config and data have been checked.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from egodistill.config import Config, resolve_path


def is_main_process() -> bool:
    """True in the first process of a torchrun / accelerate launch (RANK 0) and in a plain run."""
    return int(os.environ.get("RANK", "0")) == 0


# What a run folder holds before its first saved state: a failed start leaves only these, and
# removing them loses nothing (--resume needs last/).
_START_FILES = {"config.yaml", "info.json", "heldout.json", "metrics.jsonl", "dataset_weights.json",
                "ensemble_calibration.json", "plots", "tensorboard"}
_RUN_SECTIONS = ("run_dir", "data", "model", "optim", "train")


def is_run_folder(run_dir: Path) -> bool:
    """True when `run_dir` holds a config.yaml written by egodistill (a resolved run config: a
    mapping with run_dir and the data, model, optim and train sections)."""
    import yaml

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return False
    try:
        with open(path) as f:
            tree = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(tree, dict) and all(k in tree for k in _RUN_SECTIONS) and \
        all(isinstance(tree[k], dict) for k in _RUN_SECTIONS[1:])


def _inputs_of(cfg: Config) -> list[tuple[str, Path]]:
    """Return (what, resolved path) of everything a run reads: data root, annotation files,
    stores, teachers, the pretrained checkpoint and the teacher cache."""
    found: list[tuple[str, Path]] = []
    if cfg.data.root:
        found.append(("data.root", Path(cfg.data.root).expanduser()))
    found += [(f"data.files.{k}", resolve_path(cfg, v)) for k, v in cfg.data.files.items() if v]
    found += [(f"data.stores.{k}", resolve_path(cfg, v)) for k, v in cfg.data.stores.items() if v]
    found += [("distill.teachers", Path(t).expanduser()) for t in cfg.distill.teachers]
    if cfg.model.pretrained:
        found.append(("model.pretrained", Path(cfg.model.pretrained).expanduser()))
    return [(what, p.resolve()) for what, p in found]


def check_can_run(cfg: Config) -> None:
    """Raise ConfigError when this machine cannot run `cfg` (data.decode=gpu without CUDA,
    train.tensorboard without the tensorboard package); checked before a run folder changes."""
    import importlib.util

    from egodistill.config import ConfigError
    from egodistill.data.gpu_decode import check_decode

    check_decode(cfg)
    if cfg.train.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("train.tensorboard=true needs the tensorboard package (pip install tensorboard), "
                          "or set train.tensorboard=false")


def check_run_dir(run_dir: Path, *, resume: bool, overwrite: bool, cfg: Config | None = None) -> None:
    """Raise unless a run may start in `run_dir`; changes nothing on disk.

    With --overwrite the folder must be a run folder (`is_run_folder`) and must not hold any of
    the run's own inputs (`cfg`'s data, stores, teachers), so nothing but an old run is deleted."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"run_dir {run_dir} is a file, not a folder; set run_dir=... to a folder")
    if resume:
        if not (run_dir / "config.yaml").is_file():
            raise FileNotFoundError(f"--resume: {run_dir} holds no run to resume (no config.yaml)")
        return
    if not (run_dir.exists() and any(run_dir.iterdir())):
        return
    if not overwrite:
        raise ValueError(f"run folder {run_dir} already exists; use --resume to continue it or --overwrite "
                         f"to start it again (or set run_dir=...)")
    if not is_run_folder(run_dir):
        entries = sorted(p.name for p in run_dir.iterdir())
        raise ValueError(f"--overwrite: {run_dir} is not a run folder (no config.yaml written by egodistill), so it "
                         f"is not deleted; it holds {len(entries)} entries ({', '.join(entries[:5])}"
                         f"{', ...' if len(entries) > 5 else ''}). Set run_dir=... to another folder")
    if cfg is not None:
        root = run_dir.resolve()
        for what, path in _inputs_of(cfg):
            if path == root or root in path.parents:
                raise ValueError(f"--overwrite: run folder {run_dir} holds this run's input {what} ({path}); "
                                 f"it is not deleted. Set run_dir=... to another folder")


def prepare_run_dir(run_dir: Path, *, resume: bool, overwrite: bool, cfg: Config | None = None) -> bool:
    """Create `run_dir` (with --overwrite, after deleting the old run in it); refuse one that holds
    a run unless resuming or overwriting, and anything but a run folder (`check_run_dir`).
    Returns True when the run starts in a new, empty folder (see `discard_failed_start`).

    Call it once the config and the data have been checked: nothing is deleted before the new
    run can start."""
    check_run_dir(run_dir, resume=resume, overwrite=overwrite, cfg=cfg)
    if resume:
        return False
    if not is_main_process():  # the first process decides; the others must not race it
        run_dir.mkdir(parents=True, exist_ok=True)
        return False
    if run_dir.exists() and any(run_dir.iterdir()):
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return True


@contextlib.contextmanager
def discard_failed_start(run_dir: Path, fresh: bool | Callable[[], bool]) -> Iterator[None]:
    """Remove `run_dir` when the block raises before the run saved anything (no weights, no
    last/, only `_START_FILES`), so the next attempt needs no --overwrite. `fresh`: the folder
    was made for this run (`prepare_run_dir`'s result), or a function returning that."""
    try:
        yield
    except BaseException:
        made = fresh() if callable(fresh) else fresh
        if made and is_main_process() and run_dir.is_dir():
            names = [p.name for p in run_dir.iterdir()]
            if all(n in _START_FILES or n.endswith(".tmp") for n in names):
                shutil.rmtree(run_dir, ignore_errors=True)
        raise
