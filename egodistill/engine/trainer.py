"""The training loop shared by `train` (labels) and `distill` (ensemble teacher).

Only the `Objective` (`engine/objectives.py`) differs between the two: it turns the model's
logits and the batch into a loss. The loop never looks at the dataset's name or the modality.

Exact resumption: the order of an epoch depends only on (train.seed, epoch), each sample's view
only on (train.seed, epoch, index) (the dataset's generators), and the global torch generator
(dropout, drop-path) is re-seeded from (train.seed, step, rank) before every optimiser step.
`last/` is saved at optimiser-step boundaries with the number of batches of the epoch already
consumed; a resumed run skips exactly those (without loading them) and continues bit-identically
on the same hardware.

Read `Trainer.run` first: it is the whole loop (resume, then per epoch `train_epoch`, `evaluate`,
`save`); `TrainState` is everything that changes while it runs. `fit(...)` is the one-call form.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from egodistill.atomic import write_text
from egodistill.config import Config, ConfigError, OptimConfig
from egodistill.data.dataset import EpochOrderSampler, build_loader
from egodistill.data.records import DatasetInfo
from egodistill.engine.checkpoint import (
    WEIGHTS_FILE,
    load_train_state,
    load_weights,
    rng_state,
    save_run_files,
    save_train_state,
    save_weights,
    set_rng_state,
    unwrap,
)
from egodistill.engine.evaluate import ModelPredictor, append_jsonl, count_nonfinite, evaluate_dataset
from egodistill.engine.inputs import model_input, to_device
from egodistill.engine.metrics import selection_key
from egodistill.engine.objectives import Objective

METRICS_FILE = "metrics.jsonl"


class NonFiniteLossError(ValueError):
    """The training loss became NaN or infinite."""


# ---------------------------------------------------------------------------------------------
# Optimiser, schedule, order
# ---------------------------------------------------------------------------------------------


def _no_decay(name: str, p: nn.Parameter) -> bool:
    # Biases, norms and position tables are not decayed (as Swin / timm do).
    return p.ndim <= 1 or any(k in name for k in ("relative_position_bias_table", "pos_embed", "cls_token", "position"))


def build_optimizer(model: nn.Module, optim: OptimConfig) -> torch.optim.AdamW:
    """Return AdamW over the trainable parameters; no weight decay on 1-D parameters (biases,
    norms) and position tables."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if _no_decay(name, p) else decay).append(p)
    groups = [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=optim.lr, betas=tuple(optim.betas))


class WarmupLinearSchedule:
    """Learning-rate factor of optimiser step s (0-based): (s + 1) / W during the W warm-up
    steps, then (T - s) / (T - W) down to the last of the T steps (linear decay towards 0)."""

    def __init__(self, warmup_steps: int, total_steps: int):
        if total_steps < 1:
            raise ValueError(f"the schedule needs at least one step, got total_steps={total_steps}")
        self.warmup_steps = max(0, min(int(warmup_steps), int(total_steps)))
        self.total_steps = int(total_steps)

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.total_steps == self.warmup_steps:
            return 1.0
        return max(0.0, (self.total_steps - step) / (self.total_steps - self.warmup_steps))

    def apply(self, optimizer: torch.optim.Optimizer, base_lr: float, step: int) -> float:
        """Set every parameter group's lr for optimiser step `step`; returns the lr."""
        lr = base_lr * self.factor(step)
        for g in optimizer.param_groups:
            g["lr"] = lr
        return lr

    def state_dict(self) -> dict[str, int]:
        return {"warmup_steps": self.warmup_steps, "total_steps": self.total_steps}


def step_seed(seed: int, step: int, rank: int) -> int:
    """Return the seed of the global torch generator for optimiser step `step` on process `rank`."""
    return int(np.random.SeedSequence([int(seed), int(step), int(rank)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (call before building a model so its initialisation is fixed)."""
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_accelerator(cfg: Config):
    """Return an Accelerator for cfg.train.precision: fp16 needs CUDA (falls back to fp32 with a
    warning elsewhere); bf16 is used where requested."""
    from accelerate import Accelerator, DistributedDataParallelKwargs

    precision = cfg.train.precision
    if precision == "fp16" and not torch.cuda.is_available():
        warnings.warn("train.precision=fp16 needs a CUDA device; training in fp32 instead", stacklevel=2)
        precision = "no"
    # A head with weight 0 gets no gradient; DDP must be told some parameters may be unused.
    unused = any(w <= 0 for w in cfg.train.head_weights.values())
    return Accelerator(mixed_precision=precision, cpu=not torch.cuda.is_available(),
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=unused)])


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after optimiser step `step` (a resumed run writes them again)."""
    import json

    if not path.is_file():
        return
    keep = []
    with open(path) as f:
        for line in f:
            if line.strip():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by the crash
                if rec.get("step", 0) <= step:
                    keep.append(line if line.endswith("\n") else line + "\n")
    write_text(path, "".join(keep))


class _Tensorboard:
    def __init__(self, log_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ConfigError("train.tensorboard=true needs the tensorboard package (pip install tensorboard), "
                              "or set train.tensorboard=false") from e
        self.writer = SummaryWriter(str(log_dir))

    def log(self, record: dict[str, Any], step: int, prefix: str) -> None:
        for k, v in record.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "epoch"):
                self.writer.add_scalar(f"{prefix}/{k}", v, step)
        self.writer.flush()


@dataclass
class TrainState:
    """Where a run stands. `last/state.json` stores it (with the world size and batch size), so a
    resumed run continues from exactly here."""

    epoch: int = 0  # 0-based epoch in progress
    batch: int = 0  # batches of `epoch` already consumed (by this process)
    step: int = 0  # optimiser steps taken
    best: dict[str, Any] | None = None  # the selected weights' held-out metrics, "epoch", "step"
    finished: bool = False  # every step taken and the last evaluation done
    saved_step: int = 0  # the step last/ holds
    bad_step: Tensor | None = None  # first step whose loss was NaN / inf (-1: none), on the device


# Called as callback(trainer) on every process right after last/ is written; trainer.state says
# which step it holds.
CheckpointCallback = Callable[["Trainer"], None]


class _LogWindow:
    """Training losses and throughput summed since the last `train` record."""

    def __init__(self, device: torch.device):
        self.loss_sum = torch.zeros((), device=device)
        self.parts_sum: dict[str, Tensor] = {}
        self.micro, self.clips, self.t0 = 0, 0, time.perf_counter()

    def add(self, loss: Tensor, parts: dict[str, Tensor], clips: int) -> None:
        self.loss_sum += loss
        for k, v in parts.items():
            self.parts_sum[k] = self.parts_sum.get(k, 0) + v.detach().float()
        self.micro += 1
        self.clips += clips


class Trainer:
    """Trains `model` on `train_set` with `objective` and selects the best weights on `heldout_set`.

    `run(resume)` is the whole story: optionally `resume()` from last/, then per epoch
    `train_epoch()`, `evaluate()` on the held-out set, `save()` to last/. Writes the run folder
    (config.yaml, info.json, metrics.jsonl, model.safetensors, last/, plots/).
    """

    def __init__(self, cfg: Config, run_dir: str | os.PathLike, model: nn.Module, objective: Objective, train_set,
                 heldout_set, info: DatasetInfo, *, progress: bool = True,
                 callbacks: Sequence[CheckpointCallback] = ()):
        self.cfg, self.info, self.progress, self.callbacks = cfg, info, progress, list(callbacks)
        self.train_set, self.heldout_set = train_set, heldout_set
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.accelerator = make_accelerator(cfg)
        acc = self.accelerator
        self.rank, self.world, self.main = acc.process_index, acc.num_processes, acc.is_main_process
        self.device = acc.device
        self.log_path = self.run_dir / METRICS_FILE
        if self.main:
            save_run_files(self.run_dir, cfg, info)
        if len(train_set) == 0:
            raise ValueError("the training set is empty")
        optimizer = build_optimizer(model, cfg.optim)
        if cfg.train.compile:
            model = torch.compile(model)
        self.model, self.optimizer = acc.prepare(model, optimizer)
        self.objective = objective.to(self.device)
        self._plan_steps()
        self.state = TrainState(bad_step=torch.full((), -1, dtype=torch.long, device=self.device))
        self.tensorboard: _Tensorboard | None = None

    def _plan_steps(self) -> None:
        tc = self.cfg.train
        self.grad_accum = max(1, int(tc.grad_accum))
        per_rank = math.ceil(len(self.train_set) / self.world)
        self.batches_per_epoch = math.ceil(per_rank / tc.batch_size)
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / self.grad_accum)
        self.total_steps = tc.epochs * self.steps_per_epoch
        if tc.max_steps > 0:
            self.total_steps = min(self.total_steps, tc.max_steps)
        warmup = round(self.cfg.optim.warmup_epochs * self.steps_per_epoch)
        self.schedule = WarmupLinearSchedule(warmup, self.total_steps)

    # -- the story ------------------------------------------------------------------------------

    def run(self, resume: bool = False) -> dict[str, Any]:
        """Train to the end (from last/ when `resume`); returns the best held-out metrics with
        "epoch", "step" and "selected" (the number maximised); without a held-out set the last
        weights are kept and the metrics are empty. Raises NonFiniteLossError naming the step when
        the loss becomes NaN / inf (last/ then still holds the previous good state)."""
        s, tc = self.state, self.cfg.train
        if resume and self.resume():
            return dict(s.best or {})
        self.accelerator.wait_for_everyone()
        if tc.tensorboard and self.main:
            self.tensorboard = _Tensorboard(self.run_dir / "tensorboard")
        while s.epoch < tc.epochs:
            if s.step < self.total_steps:
                self.train_epoch()
            finished = s.step >= self.total_steps
            epoch_done = s.epoch + 1
            if finished or epoch_done % max(1, tc.eval_every) == 0 or epoch_done == tc.epochs:
                self.evaluate(epoch_done)
            if finished:
                self.save(finished=True)
                break
            s.epoch, s.batch = s.epoch + 1, 0
            self.save(finished=s.epoch >= tc.epochs)
        return dict(s.best or {})

    def train_epoch(self) -> None:
        """Run the rest of epoch `state.epoch` from batch `state.batch`."""
        from tqdm import tqdm

        s, tc = self.state, self.cfg.train
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(s.epoch)
        sampler = EpochOrderSampler(len(self.train_set), tc.seed, s.epoch, self.rank, self.world,
                                    skip=s.batch * tc.batch_size)
        loader = build_loader(self.train_set, self.cfg, train=True, sampler=sampler)
        self.model.train()
        bar = tqdm(total=self.steps_per_epoch, initial=s.batch // self.grad_accum,
                   desc=f"epoch {s.epoch + 1}/{tc.epochs}", disable=not (self.progress and self.main), leave=False)
        window = _LogWindow(self.device)
        for batch in loader:
            if not self._forward_backward(batch, window):
                continue  # gradients still accumulating
            window = self._optimizer_step(window, bar)
            if s.step >= self.total_steps:
                break
        bar.close()

    def _forward_backward(self, batch: dict, window: _LogWindow) -> bool:
        """One micro-batch: loss and gradients (summed over the accumulation group); returns
        whether the group is complete (time for the optimiser step)."""
        s, acc = self.state, self.accelerator
        micro = s.batch % self.grad_accum
        group = min(self.grad_accum, self.batches_per_epoch - (s.batch - micro))
        if micro == 0:
            torch.manual_seed(step_seed(self.cfg.train.seed, s.step, self.rank))
        batch = to_device(batch, self.device, non_blocking=True)
        sync = micro == group - 1
        ctx = acc.no_sync(self.model) if (self.world > 1 and not sync) else contextlib.nullcontext()
        with ctx:
            with acc.autocast():
                logits = self.model(model_input(batch, self.cfg.model))
                loss, parts = self.objective(logits, batch)
            acc.backward(loss / group)
        loss = loss.detach().float()
        s.bad_step = torch.where((s.bad_step < 0) & ~torch.isfinite(loss), s.step, s.bad_step)
        window.add(loss, parts, len(batch["id"]) * self.world)
        s.batch += 1
        return sync

    def _optimizer_step(self, window: _LogWindow, bar) -> _LogWindow:
        """Step the optimiser; log and checkpoint when due. Returns the log window to go on with."""
        s, tc, optim = self.state, self.cfg.train, self.cfg.optim
        if optim.grad_clip > 0:
            self.accelerator.clip_grad_norm_(self.model.parameters(), optim.grad_clip)
        lr = self.schedule.apply(self.optimizer, optim.lr, s.step)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        s.step += 1
        bar.update(1)
        if s.step % max(1, tc.log_every) == 0 or s.step == self.total_steps:
            record = self._log_train(window, lr)
            bar.set_postfix(loss=f"{record['loss']:.4f}", clips_s=f"{record['clips_per_s']:.1f}")
            window = _LogWindow(self.device)
        if tc.checkpoint_every > 0 and s.step % tc.checkpoint_every == 0:
            self.save()
        return window

    def _log_train(self, window: _LogWindow, lr: float) -> dict[str, Any]:
        self.check_finite()
        s = self.state
        mean_loss = window.loss_sum / window.micro
        if self.world > 1:
            mean_loss = self.accelerator.reduce(mean_loss, "mean")
        elapsed = max(time.perf_counter() - window.t0, 1e-9)
        record = {"kind": "train", "epoch": s.epoch + 1, "step": s.step, "loss": float(mean_loss), "lr": lr,
                  "clips_per_s": window.clips / elapsed}
        record.update({f"loss/{k}": float(v / window.micro) for k, v in window.parts_sum.items()})
        if self.main:
            append_jsonl(self.log_path, record)
            if self.tensorboard:
                self.tensorboard.log(record, s.step, "train")
        return record

    # -- held-out evaluation --------------------------------------------------------------------

    def evaluate(self, epoch_done: int) -> None:
        """Evaluate on the held-out set after `epoch_done` epochs; keep the weights
        (model.safetensors) when they are the best so far or train.keep_weights is "last"; log the record."""
        self.check_finite()
        s = self.state
        record: dict[str, Any] = {"kind": "eval", "split": "heldout", "epoch": epoch_done, "step": s.step}
        if self.heldout_set is not None and len(self.heldout_set) > 0:
            improved = self._score_heldout(record)
        else:  # no held-out split: the latest weights are the ones kept
            improved = True
            s.best = {"epoch": epoch_done, "step": s.step}
        record["best"] = improved
        if self.main:
            self._write_eval(record, improved)
        self.accelerator.wait_for_everyone()

    def _score_heldout(self, record: dict[str, Any]) -> bool:
        """Add the held-out metrics to `record`; returns whether these weights are kept: the best
        so far, or (train.keep_weights "last") any with finite logits."""
        s = self.state
        net = unwrap(self.model)
        was_training = net.training
        net.eval()
        metrics, logits, _ = evaluate_dataset(ModelPredictor(net, self.cfg.model), self.heldout_set, self.cfg,
                                              self.info, self.accelerator, progress=self.progress, desc="held-out")
        net.train(was_training)
        selected, tie_break = selection_key(metrics, self.cfg.train.select_metric)
        # Weights that give NaN or infinite logits are never selected, whatever they score.
        nonfinite = count_nonfinite(logits)
        improved = not nonfinite and (
            s.best is None or (selected, tie_break) > (s.best["selected"], s.best.get("tie_break", float("-inf"))))
        record.update(metrics)
        record["selected"] = selected
        if nonfinite:
            record["nonfinite_logits"] = nonfinite
            if self.main:
                print(f"epoch {record['epoch']}: the model gives NaN or infinite logits on {nonfinite} held-out "
                      f"sample(s) (diverged weights?); these weights are not selected")
        if self.cfg.train.keep_weights == "last":
            improved = not nonfinite
        if improved:
            s.best = {**metrics, "selected": selected, "tie_break": tie_break, "epoch": record["epoch"], "step": s.step}
        return improved

    def _write_eval(self, record: dict[str, Any], improved: bool) -> None:
        if improved:
            save_weights(self.model, self.run_dir / WEIGHTS_FILE)
        append_jsonl(self.log_path, record)
        if self.tensorboard:
            self.tensorboard.log(record, self.state.step, "heldout")
        _plot(self.run_dir, self.log_path)
        if "selected" in record:
            tc = self.cfg.train
            name = tc.select_metric or ("action_top1" if "action_top1" in record else "mean top-1")
            print(f"epoch {record['epoch']}: held-out {name} {record['selected']:.2f}"
                  f"{(' (best)' if tc.keep_weights == 'best' else ' (kept)') if improved else ''}")

    # -- last/ ----------------------------------------------------------------------------------

    def save(self, finished: bool = False) -> None:
        """Write last/ (weights, optimiser, scaler, RNG and `state`), then call the callbacks."""
        self.check_finite()
        s, acc = self.state, self.accelerator
        s.finished = finished
        if self.main:
            training_state = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.schedule.state_dict(),
                "scaler": acc.scaler.state_dict() if acc.scaler is not None else None,
                "rng": rng_state(),
            }
            state = {"epoch": s.epoch, "batch": s.batch, "step": s.step, "best": s.best, "finished": finished,
                     "world": self.world, "batch_size": self.cfg.train.batch_size}
            save_train_state(self.run_dir, self.model, training_state, state)
        s.saved_step = s.step
        acc.wait_for_everyone()
        for callback in self.callbacks:
            callback(self)

    def resume(self) -> bool:
        """Load last/ into the model, optimiser, scaler, RNG and `state`; returns whether the run
        had already finished."""
        last_dir, training_state, saved = load_train_state(self.run_dir)
        load_weights(self.model, last_dir / WEIGHTS_FILE)
        self.optimizer.load_state_dict(training_state["optimizer"])
        scaler = self.accelerator.scaler
        if training_state.get("scaler") is not None and scaler is not None:
            scaler.load_state_dict(training_state["scaler"])
        set_rng_state(training_state["rng"])
        s = self.state
        s.epoch, s.batch, s.step = int(saved["epoch"]), int(saved["batch"]), int(saved["step"])
        s.best, s.finished, s.saved_step = saved.get("best"), bool(saved.get("finished")), s.step
        if self.main:
            _truncate_log(self.log_path, s.step)
            print(f"resuming {self.run_dir} at epoch {s.epoch + 1}, batch {s.batch}, step {s.step}")
        return s.finished

    def check_finite(self) -> None:
        """Raise NonFiniteLossError when any process saw a NaN / inf loss since the start."""
        s = self.state
        bad = s.bad_step
        found = int(self.accelerator.gather(bad.reshape(1)).max()) if self.world > 1 else int(bad)
        if found < 0:
            return
        last = self.run_dir / "last"
        saved = s.saved_step > 0 and last.is_dir()
        where = f"{last} (step {s.saved_step})" if saved else "none (no state saved yet)"
        raise NonFiniteLossError(
            f"the training loss became NaN or infinite at optimiser step {found + 1} (epoch {s.epoch + 1}); "
            f"training stopped and nothing after the last good checkpoint was saved. Last good checkpoint: "
            f"{where}. Lower optim.lr, check the inputs, or resume with --resume after fixing the cause")


def fit(cfg: Config, run_dir: str | os.PathLike, model: nn.Module, objective: Objective, train_set, heldout_set,
        info: DatasetInfo, *, resume: bool = False, progress: bool = True,
        callbacks: Sequence[CheckpointCallback] = ()) -> dict[str, Any]:
    """`Trainer(...).run(resume)`: train, select on the held-out set, return the best metrics."""
    trainer = Trainer(cfg, run_dir, model, objective, train_set, heldout_set, info, progress=progress,
                      callbacks=callbacks)
    return trainer.run(resume=resume)


def _plot(run_dir: Path, log_path: Path) -> None:
    from egodistill.engine.plots import plot_training_curves, read_metrics_log

    try:
        plot_training_curves(read_metrics_log(log_path), run_dir / "plots" / "training.png")
    except Exception as e:  # a figure must never stop training
        warnings.warn(f"could not draw the training curves: {e}", stacklevel=2)
