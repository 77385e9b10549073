"""The training loop shared by `train` (labels) and `distill` (ensemble teacher).

Only the `Objective` differs between the two: it turns the model's logits and the batch into a
loss. The loop never looks at the dataset's name or the modality.

Exact resumption: the order of an epoch depends only on (train.seed, epoch), each sample's view
only on (train.seed, epoch, index) (the dataset's generators), and the global torch generator
(dropout, drop-path) is re-seeded from (train.seed, step, rank) before every optimiser step.
`last/` is saved at optimiser-step boundaries with the number of batches of the epoch already
consumed; a resumed run skips exactly those (without loading them) and continues bit-identically
on the same hardware.
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Sampler

from egodistill.config import Config, OptimConfig
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
from egodistill.engine.evaluate import append_jsonl, count_nonfinite, evaluate_dataset, model_predictor
from egodistill.engine.inputs import model_input, to_device
from egodistill.engine.losses import label_loss
from egodistill.engine.metrics import selection_metric

METRICS_FILE = "metrics.jsonl"
# Testing hook: a training process sends itself SIGKILL right after saving last/ at this step,
# to test that --resume after a crash reaches exactly the same result.
KILL_AFTER_STEP_ENV = "EGODISTILL_KILL_AFTER_STEP"


class NonFiniteLossError(ValueError):
    """The training loss became NaN or infinite."""


# ---------------------------------------------------------------------------------------------
# Objectives
# ---------------------------------------------------------------------------------------------


class Objective(nn.Module):
    """Turns a model's logits and the batch into the training loss.

    forward(logits {head: [B*V, C]}, batch) -> (loss scalar, {name: detached scalar to log}).
    An objective may hold frozen modules (teachers); `fit` moves it to the training device.
    """

    def forward(self, logits: dict[str, Tensor], batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError


class SupervisedObjective(Objective):
    """L_gt = (1/|H|) sum_h w_h CE(s_h, y_h) (METHOD.md §3) over the active heads (weight > 0,
    default 1), by `engine.losses.label_loss`: labels of -1 (unlabelled) are ignored; a head
    whose rows are all unlabelled adds 0."""

    def __init__(self, head_weights: dict[str, float] | None = None):
        super().__init__()
        self.head_weights = dict(head_weights or {})

    def forward(self, logits: dict[str, Tensor], batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        heads = [h for h in logits if self.head_weights.get(h, 1.0) > 0]
        if not heads:
            raise ValueError(f"no active heads: every head of {sorted(logits)} has weight 0 in train.head_weights")
        return label_loss(logits, batch.get("labels"), heads, self.head_weights)


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


class EpochOrderSampler(Sampler[int]):
    """This process's share of a random order of `size` items that depends only on (seed, epoch),
    starting after `skip` items (the part of the epoch a resumed run already consumed).

    The order is padded by wrapping around to a multiple of `world` so every process takes the
    same number of steps; process r takes items r, r + world, ...
    """

    def __init__(self, size: int, seed: int, epoch: int, rank: int = 0, world: int = 1, skip: int = 0):
        self.size, self.seed, self.epoch = int(size), int(seed), int(epoch)
        self.rank, self.world, self.skip = int(rank), int(world), int(skip)

    def order(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.size, generator=g).tolist()
        per_rank = math.ceil(self.size / self.world) if self.size else 0
        perm = (perm * (self.world + 1))[: per_rank * self.world]
        return perm[self.rank:: self.world][self.skip:]

    def __len__(self) -> int:
        return len(self.order())

    def __iter__(self):
        return iter(self.order())


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
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.writelines(keep)
    os.replace(tmp, path)


class _Tensorboard:
    def __init__(self, log_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ImportError("train.tensorboard=true needs the tensorboard package (pip install tensorboard)") from e
        self.writer = SummaryWriter(str(log_dir))

    def log(self, record: dict[str, Any], step: int, prefix: str) -> None:
        for k, v in record.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "epoch"):
                self.writer.add_scalar(f"{prefix}/{k}", v, step)
        self.writer.flush()


def fit(cfg: Config, run_dir: str | os.PathLike, model: nn.Module, objective: Objective, train_set, heldout_set,
        info: DatasetInfo, *, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train `model` on `train_set` with `objective`; select the best weights on `heldout_set`.

    Writes the run folder (config.yaml, info.json, metrics.jsonl, model.safetensors, last/,
    plots/). Returns the best held-out metrics with "epoch", "step" and "selected" (the number
    maximised); without a held-out set the last weights are kept and the metrics are empty.
    Raises NonFiniteLossError naming the step when the loss becomes NaN / inf (last/ then still
    holds the previous good state).
    """
    from tqdm import tqdm

    tc = cfg.train
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    accelerator = make_accelerator(cfg)
    rank, world, main = accelerator.process_index, accelerator.num_processes, accelerator.is_main_process
    device = accelerator.device
    log_path = run_dir / METRICS_FILE
    if main:
        save_run_files(run_dir, cfg, info)
    if len(train_set) == 0:
        raise ValueError("the training set is empty")

    optimizer = build_optimizer(model, cfg.optim)
    if tc.compile:
        model = torch.compile(model)
    model, optimizer = accelerator.prepare(model, optimizer)
    objective = objective.to(device)
    grad_accum = max(1, int(tc.grad_accum))
    per_rank = math.ceil(len(train_set) / world)
    batches_per_epoch = math.ceil(per_rank / tc.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / grad_accum)
    total_steps = tc.epochs * steps_per_epoch
    if tc.max_steps > 0:
        total_steps = min(total_steps, tc.max_steps)
    schedule = WarmupLinearSchedule(round(cfg.optim.warmup_epochs * steps_per_epoch), total_steps)

    epoch, batch_start, step = 0, 0, 0
    best: dict[str, Any] | None = None
    if resume:
        last_dir, training_state, state = load_train_state(run_dir)
        load_weights(model, last_dir / WEIGHTS_FILE)
        optimizer.load_state_dict(training_state["optimizer"])
        if training_state.get("scaler") is not None and accelerator.scaler is not None:
            accelerator.scaler.load_state_dict(training_state["scaler"])
        set_rng_state(training_state["rng"])
        epoch, batch_start, step = int(state["epoch"]), int(state["batch"]), int(state["step"])
        best = state.get("best")
        if main:
            _truncate_log(log_path, step)
            print(f"resuming {run_dir} at epoch {epoch + 1}, batch {batch_start}, step {step}")
        if state.get("finished"):
            return dict(best or {})
    accelerator.wait_for_everyone()
    tensorboard = _Tensorboard(run_dir / "tensorboard") if tc.tensorboard and main else None
    kill_after = int(os.environ.get(KILL_AFTER_STEP_ENV, "0") or 0)

    bad_step = torch.full((), -1, dtype=torch.long, device=device)  # first step with a non-finite loss
    last_saved_step = step

    def check_finite() -> None:
        found = int(accelerator.gather(bad_step.reshape(1)).max()) if world > 1 else int(bad_step)
        if found >= 0:
            last = run_dir / "last"
            where = f"{last} (step {last_saved_step})" if last_saved_step > 0 and last.is_dir() else "none (no state saved yet)"
            raise NonFiniteLossError(
                f"the training loss became NaN or infinite at optimiser step {found + 1} (epoch {epoch + 1}); "
                f"training stopped and nothing after the last good checkpoint was saved. Last good checkpoint: "
                f"{where}. Lower optim.lr, check the inputs, or resume with --resume after fixing the cause")

    def save_state(epoch_: int, batch_: int, finished: bool = False) -> None:
        nonlocal last_saved_step
        check_finite()
        if main:
            training_state = {
                "optimizer": optimizer.state_dict(),
                "scheduler": schedule.state_dict(),
                "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
                "rng": rng_state(),
            }
            state = {"epoch": epoch_, "batch": batch_, "step": step, "best": best, "finished": finished,
                     "world": world, "batch_size": tc.batch_size}
            save_train_state(run_dir, model, training_state, state)
        last_saved_step = step
        accelerator.wait_for_everyone()
        if kill_after and step == kill_after and main and not finished:
            os.kill(os.getpid(), signal.SIGKILL)

    def evaluate_heldout(epoch_done: int) -> None:
        nonlocal best
        check_finite()
        record: dict[str, Any] = {"kind": "eval", "split": "heldout", "epoch": epoch_done, "step": step}
        improved = True
        if heldout_set is not None and len(heldout_set) > 0:
            net = unwrap(model)
            was_training = net.training
            net.eval()
            metrics, logits, _ = evaluate_dataset(model_predictor(net, cfg.model), heldout_set, cfg, info, accelerator,
                                                  progress=progress, desc="held-out")
            net.train(was_training)
            selected = selection_metric(metrics, tc.select_metric)
            # Weights that give NaN or infinite logits are never selected, whatever they score.
            nonfinite = count_nonfinite(logits)
            improved = not nonfinite and (best is None or selected > best["selected"])
            record.update(metrics)
            record["selected"] = selected
            if nonfinite:
                record["nonfinite_logits"] = nonfinite
                if main:
                    print(f"epoch {epoch_done}: the model gives NaN or infinite logits on {nonfinite} held-out "
                          f"sample(s) (diverged weights?); these weights are not selected")
            if improved:
                best = {**metrics, "selected": selected, "epoch": epoch_done, "step": step}
        else:  # no held-out split: the latest weights are the ones kept
            best = {"epoch": epoch_done, "step": step}
        record["best"] = improved
        if main:
            if improved:
                save_weights(model, run_dir / WEIGHTS_FILE)
            append_jsonl(log_path, record)
            if tensorboard:
                tensorboard.log(record, step, "heldout")
            _plot(run_dir, log_path)
            if "selected" in record:
                name = tc.select_metric or ("action_top1" if "action_top1" in record else "mean top-1")
                print(f"epoch {epoch_done}: held-out {name} {record['selected']:.2f}"
                      f"{' (best)' if improved else ''}")
        accelerator.wait_for_everyone()

    def _train_epoch() -> int:
        """Run the rest of epoch `epoch` from batch `batch_start`; returns the batches consumed."""
        nonlocal step, bad_step
        from egodistill.data.dataset import build_loader

        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        sampler = EpochOrderSampler(len(train_set), tc.seed, epoch, rank, world, skip=batch_start * tc.batch_size)
        loader = build_loader(train_set, cfg, train=True, sampler=sampler)
        model.train()
        bar = tqdm(total=steps_per_epoch, initial=batch_start // grad_accum, desc=f"epoch {epoch + 1}/{tc.epochs}",
                   disable=not (progress and main), leave=False)
        loss_sum = torch.zeros((), device=device)
        parts_sum: dict[str, Tensor] = {}
        micro_count, clips, t0 = 0, 0, time.perf_counter()
        b = batch_start
        for batch in loader:
            micro = b % grad_accum
            group = min(grad_accum, batches_per_epoch - (b - micro))
            if micro == 0:
                torch.manual_seed(step_seed(tc.seed, step, rank))
            batch = to_device(batch, device, non_blocking=True)
            sync = micro == group - 1
            ctx = accelerator.no_sync(model) if (world > 1 and not sync) else contextlib.nullcontext()
            with ctx:
                with accelerator.autocast():
                    logits = model(model_input(batch, cfg.model))
                    loss, parts = objective(logits, batch)
                accelerator.backward(loss / group)
            loss = loss.detach().float()
            bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss), step, bad_step)
            loss_sum += loss
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0) + v.detach().float()
            micro_count += 1
            clips += len(batch["id"]) * world
            b += 1
            if not sync:
                continue
            if cfg.optim.grad_clip > 0:
                accelerator.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            lr = schedule.apply(optimizer, cfg.optim.lr, step)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            if step % max(1, tc.log_every) == 0 or step == total_steps:
                check_finite()
                mean_loss = accelerator.reduce(loss_sum / micro_count, "mean") if world > 1 else loss_sum / micro_count
                elapsed = max(time.perf_counter() - t0, 1e-9)
                record = {"kind": "train", "epoch": epoch + 1, "step": step, "loss": float(mean_loss), "lr": lr,
                          "clips_per_s": clips / elapsed}
                record.update({f"loss/{k}": float(v / micro_count) for k, v in parts_sum.items()})
                if main:
                    append_jsonl(log_path, record)
                    if tensorboard:
                        tensorboard.log(record, step, "train")
                bar.set_postfix(loss=f"{record['loss']:.4f}", clips_s=f"{record['clips_per_s']:.1f}")
                loss_sum.zero_()
                parts_sum, micro_count, clips, t0 = {}, 0, 0, time.perf_counter()
            if tc.checkpoint_every > 0 and step % tc.checkpoint_every == 0:
                save_state(epoch, b)
            if step >= total_steps:
                break
        bar.close()
        return b

    b = batch_start
    while epoch < tc.epochs:
        if step < total_steps:
            b = _train_epoch()
        finished = step >= total_steps
        batch_start = 0
        epoch_done = epoch + 1
        if finished or epoch_done % max(1, tc.eval_every) == 0 or epoch_done == tc.epochs:
            evaluate_heldout(epoch_done)
        if finished:
            save_state(epoch, b, finished=True)
            break
        epoch += 1
        save_state(epoch, 0, finished=epoch >= tc.epochs)
    if best is None:  # resumed a run that had already finished every epoch
        best = {}
    return dict(best)


def _plot(run_dir: Path, log_path: Path) -> None:
    from egodistill.engine.plots import plot_training_curves, read_metrics_log

    try:
        plot_training_curves(read_metrics_log(log_path), run_dir / "plots" / "training.png")
    except Exception as e:  # a figure must never stop training
        warnings.warn(f"could not draw the training curves: {e}", stacklevel=2)
