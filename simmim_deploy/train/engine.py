"""The one training loop: pre-training and every fine-tuning task run through :func:`fit`.

A task says only how to compute a loss from a batch (:class:`TrainTask`); the engine owns the
rest: device placement, AMP (bf16, or fp16 with a grad scaler: one autocast code path), gradient
accumulation, optional ``torch.compile``, DDP when launched by ``torchrun`` (plain single process
otherwise), resumable data order, grad-norm clipping, per-iteration LR scheduling, non-finite loss
detection, ``metrics.csv`` + TensorBoard + progress bar, and atomic resumable checkpoints
(``<out>/checkpoints/last.pt``, see :mod:`simmim_deploy.train.checkpointing`).

Example:
    >>> seed_everything(cfg.seed)                         # before building the model
    >>> model = build_model(...)
    >>> cfg = EngineConfig(epochs=2, batch_size=32)
    >>> n = steps_per_epoch(len(dataset), cfg)            # size the LR schedule with it
    >>> opt = build_optimizer(model, lr, 0.05, (0.9, 0.999), 1e-8, None)
    >>> sched = build_scheduler(opt, n * cfg.epochs, n * warmup_epochs, "cosine", ...)
    >>> result = fit(model, MyTask(), dataset, cfg, opt, sched, "runs/x")

Determinism: each epoch's order is a permutation seeded by ``(seed, epoch)``. Datasets that draw
random augmentations should seed them from ``(seed, epoch, index)``; the engine calls
``dataset.set_epoch(epoch)`` when the dataset has it. Then a run resumed from ``last.pt``
finishes bitwise equal to an uninterrupted one (CPU, same world size).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from simmim_deploy.train import checkpointing as ckpt
from simmim_deploy.train import distributed as dist
from simmim_deploy.train.checkpointing import state_digest
from simmim_deploy.train.engine_config import (
    AMP_DTYPES,
    EngineConfig,
    FitResult,
    NonFiniteLossError,
    TrainTask,
    move_to,
    seed_everything,
    steps_per_epoch,
)
from simmim_deploy.train.precision import resolve_precision
from simmim_deploy.train.run_log import MetricWindow, RunLogger
from simmim_deploy.train.sampler import ResumableSampler

__all__ = [
    "EngineConfig",
    "FitResult",
    "NonFiniteLossError",
    "TrainTask",
    "fit",
    "move_to",
    "seed_everything",
    "state_digest",
    "steps_per_epoch",
]


def fit(
    model: nn.Module,
    task: TrainTask,
    train_dataset: Dataset,
    config: EngineConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None,
    out_dir: str | Path,
    *,
    meta: dict[str, Any] | None = None,
    collate_fn: Any | None = None,
    description: str = "train",
    notes: tuple[str, ...] | list[str] = (),
) -> FitResult:
    """Train ``model`` on ``train_dataset`` with ``task``'s loss; resumable and distributed.

    Args:
        model: the model, built on CPU (moved to the device here; DDP/compile wrap it inside).
        task: computes the loss of a batch; optional evaluation and per-epoch hooks.
        train_dataset: map-style dataset; ``set_epoch(epoch)`` is called when it has one.
        config: how to run the loop.
        optimizer: optimizer over ``model``'s parameters.
        scheduler: stepped once per optimizer step (per iteration), or None.
        out_dir: run folder: ``checkpoints/last.pt``, ``metrics.csv``, ``tensorboard/``.
        meta: plain values stored in the checkpoint (model name, resolved config, ...).
        collate_fn: DataLoader collate function (default: torch's).
        description: label of the progress bar.
        notes: lines printed (rank 0) before the first step, e.g. how the LR was derived.

    Returns:
        A :class:`FitResult`. The process group (if any) is left open for the caller's final
        rank-0 writes; call :func:`simmim_deploy.train.distributed.teardown` afterwards.

    Raises:
        NonFiniteLossError: the loss became NaN/inf (``last.pt`` keeps the last good state).
        UserError: ``out_dir`` already holds a run and ``config.resume`` is False, or the data
            set is too small for one optimizer step.
    """
    info = dist.init_distributed(config.device)
    precision, why = resolve_precision(config.precision, info.device)
    config = dataclasses.replace(config, precision=precision)
    out = Path(out_dir)
    ckpt.check_run_folder(out, config.resume)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        ckpt.link_last(out)
    model.to(info.device)
    scaler = torch.amp.GradScaler(info.device.type, enabled=config.precision == "fp16")
    progress = _start_or_resume(out, config, info, model, optimizer, scheduler, scaler)
    logger = RunLogger(
        out,
        enabled=info.is_main,
        resume_step=progress["global_step"] if progress["global_step"] > 0 else None,
        progress=config.progress,
    )
    loop = _Loop(model, task, train_dataset, config, optimizer, scheduler, scaler, out, info)
    loop.start(logger, meta or {}, collate_fn, progress)
    for note in (*notes, why):
        logger.print(note)
    try:
        return loop.run(description)
    finally:
        logger.close()


def _start_or_resume(
    out: Path,
    config: EngineConfig,
    info: dist.DistInfo,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None,
    scaler: torch.amp.GradScaler,
) -> dict[str, Any]:
    path = ckpt.last_checkpoint_path(out)
    fresh = {
        "epoch": 0,
        "step_in_epoch": 0,
        "global_step": 0,
        "images_seen": 0,
        "epoch_loss_sum": 0.0,
        "world_size": info.world_size,
    }
    if not (config.resume and path.is_file()):
        seed_everything(config.seed + info.rank)  # dropout / drop-path differ across ranks
        return fresh
    state = ckpt.load_training_state(path, map_location="cpu")
    progress = ckpt.restore_training_state(
        state,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        rank=info.rank,
    )
    return {**fresh, **progress}


@dataclasses.dataclass(eq=False)
class _Loop:
    """State of one ``fit`` call, split into short methods."""

    model: nn.Module
    task: TrainTask
    dataset: Dataset
    cfg: EngineConfig
    opt: torch.optim.Optimizer
    sched: Any | None
    scaler: torch.amp.GradScaler
    out: Path
    info: dist.DistInfo

    def start(
        self, logger: RunLogger, meta: dict[str, Any], collate_fn: Any, progress: dict[str, Any]
    ) -> None:
        """Build the sampler, loader and wrappers; ``progress`` is where the run stands."""
        config, info, dataset, model = self.cfg, self.info, self.dataset, self.model
        self.logger, self.meta, self.p = logger, meta, progress
        self.steps = steps_per_epoch(len(dataset), config, info.world_size)
        self.sampler = ResumableSampler(
            dataset, info.world_size, info.rank, shuffle=True, seed=config.seed
        )
        self.generator = torch.Generator()  # keeps DataLoader seeding off the global RNG
        self.loader = DataLoader(
            dataset,
            batch_size=config.batch_size,
            sampler=self.sampler,
            drop_last=True,
            num_workers=config.workers,
            collate_fn=collate_fn,
            generator=self.generator,
            pin_memory=info.device.type == "cuda",
        )
        self.ddp = None
        self.train_model: nn.Module = model
        if info.world_size > 1:
            ids = [info.device.index] if info.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(
                model, device_ids=ids, find_unused_parameters=config.find_unused_parameters
            )
            self.train_model = self.ddp
        if config.compile:
            self.train_model = torch.compile(self.train_model)
        self.amp_dtype = AMP_DTYPES[config.precision]
        self.history: list[dict[str, float]] = []
        self._window = MetricWindow()
        self.last_loss = math.nan

    def autocast(self) -> contextlib.AbstractContextManager:
        """The one mixed-precision context (disabled in fp32)."""
        return torch.autocast(
            self.info.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None
        )

    def run(self, description: str) -> FitResult:
        total = self.steps * self.cfg.epochs
        self.logger.start_bar(total, self.p["global_step"], description)
        stopped = False
        early: str | None = None
        for epoch in range(self.p["epoch"], self.cfg.epochs):
            stopped = self._run_epoch(epoch)
            if stopped:
                break
            self._end_epoch(epoch)
            early = self._early_stop()
            if early and epoch + 1 < self.cfg.epochs:
                self.logger.print(early)
                break
            early = None
            if self._stop_now():
                stopped = epoch + 1 < self.cfg.epochs
                break
        digests = dist.all_gather_objects(state_digest(self.model))
        if len(set(digests)) > 1:  # DDP keeps replicas equal; a difference is a real bug
            raise RuntimeError(f"model weights differ across ranks: {digests}")
        return FitResult(
            model=self.model,
            rank_digests=digests,
            global_step=self.p["global_step"],
            epochs_completed=self.p["epoch"],
            images_seen=self.p["images_seen"],
            last_loss=self.last_loss,
            history=self.history,
            stopped_early=stopped,
            checkpoint=ckpt.last_checkpoint_path(self.out),
            dist=self.info,
            precision=self.cfg.precision,
            early_stop=early,
        )

    def _early_stop(self) -> str | None:
        """The task's reason to stop (decided on rank 0, where it validates; told to all)."""
        return dist.all_gather_objects(self.task.stop_reason() if self.info.is_main else None)[0]

    def _stop_now(self) -> bool:
        stop = self.cfg.stop_at_step
        return stop is not None and self.p["global_step"] >= stop

    def _run_epoch(self, epoch: int) -> bool:
        """Train the rest of epoch ``epoch``; True when ``stop_at_step`` ended it early."""
        first = self.p["step_in_epoch"]
        per_step = self.cfg.batch_size * self.cfg.accumulation
        self.sampler.set_epoch(epoch, start_index=first * per_step)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        self.generator.manual_seed(self.cfg.seed * 1_000_003 + epoch)
        self.model.train()
        batches = iter(self.loader)
        try:
            for step_in_epoch in range(first, self.steps):
                self._train_step(batches, epoch)
                self.p["step_in_epoch"] = step_in_epoch + 1
                gs = self.p["global_step"]
                if step_in_epoch + 1 < self.steps:
                    every = self.cfg.save_every_steps
                    if (every and gs % every == 0) or self._stop_now():
                        self._save()
                    if self._stop_now():
                        return True
        finally:
            del batches  # shut DataLoader workers down before the epoch-end hooks
        return False

    def _train_step(self, batches: Any, epoch: int) -> None:
        """One optimizer step over ``accumulation`` micro-batches."""
        accum = self.cfg.accumulation
        loss_sum = torch.zeros((), device=self.info.device)
        images = 0
        for micro in range(accum):
            batch = move_to(next(batches), self.info.device)
            images += self.task.batch_size(batch)
            syncing = self.ddp is None or micro == accum - 1
            with contextlib.nullcontext() if syncing else self.ddp.no_sync():
                with self.autocast():
                    loss, logs = self.task.loss(self.train_model, batch)
                self.scaler.scale(loss / accum).backward()
            loss_sum += loss.detach().float()
            self._window.add_logs(logs, 1.0 / accum)
        mean_loss = dist.all_reduce_mean(loss_sum / accum).item()
        step = self.p["global_step"] + 1
        if not math.isfinite(mean_loss):
            self.opt.zero_grad(set_to_none=True)
            raise NonFiniteLossError(
                f"loss became {mean_loss} at step {step} (epoch {epoch + 1}); stopped. The last "
                f"good state is in {ckpt.last_checkpoint_path(self.out)}: lower the learning "
                "rate, or use --precision bf16/fp32, then --resume"
            )
        grad_norm = self._optimizer_step()
        self.p["global_step"] = step
        self.p["images_seen"] += images * self.info.world_size
        self.p["epoch_loss_sum"] += mean_loss
        self.last_loss = mean_loss
        self._window.add_step(mean_loss, grad_norm, images * self.info.world_size)
        lr = max(g["lr"] for g in self.opt.param_groups)
        self.logger.advance(f"loss {mean_loss:.4f} lr {lr:.2e} {self._window.rate():.0f} img/s")
        if (
            step % max(self.cfg.log_every_steps, 1) == 0
            or self.p["step_in_epoch"] + 1 == self.steps
        ):
            self._log_window(epoch, lr)

    def _optimizer_step(self) -> torch.Tensor:
        self.scaler.unscale_(self.opt)  # no-op unless fp16
        max_norm = self.cfg.clip_grad or math.inf  # inf: measure the norm, clip nothing
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        self.scaler.step(self.opt)  # skipped by the scaler when fp16 grads overflowed
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        if self.sched is not None:
            self.sched.step()
        return grad_norm.detach()

    def _log_window(self, epoch: int, lr: float) -> None:
        row = {"epoch": epoch + 1, "lr": lr, **self._window.summary()}
        self.logger.log(self.p["global_step"], row)
        self._window = MetricWindow()

    def _end_epoch(self, epoch: int) -> None:
        steps_done = self.steps
        entry = {"epoch": epoch + 1, "train_loss": self.p["epoch_loss_sum"] / steps_done}
        if self.info.is_main:
            self.model.eval()
            with torch.no_grad(), self.autocast():
                entry.update(self.task.evaluate(self.model, epoch))
                self.task.on_epoch_end(self.model, epoch, self.out)
            self.model.train()
        dist.barrier()
        self.history.append(entry)
        self.logger.log(self.p["global_step"], entry)
        self.logger.print(
            f"epoch {epoch + 1}/{self.cfg.epochs}: "
            + ", ".join(f"{k} {v:.4g}" for k, v in entry.items() if k != "epoch")
        )
        self.p.update(epoch=epoch + 1, step_in_epoch=0, epoch_loss_sum=0.0)
        self._save()

    def _save(self) -> None:
        rng = dist.all_gather_objects(ckpt.capture_rng_state())
        if self.info.is_main:
            ckpt.save_training_state(
                ckpt.last_checkpoint_path(self.out),
                model=self.model,
                optimizer=self.opt,
                scheduler=self.sched,
                scaler=self.scaler,
                progress={**self.p, "world_size": self.info.world_size},
                rng=rng,
                meta=self.meta,
            )
