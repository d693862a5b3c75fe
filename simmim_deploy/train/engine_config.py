"""Types of the training engine: its config, the task protocol, the result (see engine.py)."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from simmim_deploy.core.errors import UserError
from simmim_deploy.train.distributed import DistInfo, launch
from simmim_deploy.train.run_options import Precision, RunOptions

AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class NonFiniteLossError(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainTask:
    """What a training task tells the engine. Subclass it and implement :meth:`loss`.

    Hooks run with the unwrapped model (no DDP/compile wrapper). ``evaluate`` and
    ``on_epoch_end`` run on rank 0 only, in eval mode under ``torch.no_grad``; other ranks wait.
    """

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """Compute the loss of one (micro-)batch already on the training device.

        Args:
            model: the model to call (possibly DDP / compiled); runs under autocast.
            batch: one batch from the DataLoader, tensors moved to the device.

        Returns:
            ``(loss, logs)``: a scalar tensor to minimise and extra values to log (floats or
            0-dim tensors; averaged over the logging window).
        """
        raise NotImplementedError

    def batch_size(self, batch: Any) -> int:
        """Number of samples in ``batch`` (for images/s). Default: length of its first tensor."""
        first = batch
        while isinstance(first, (list, tuple)):
            first = first[0]
        if isinstance(first, dict):
            first = next(iter(first.values()))
        return len(first)

    def evaluate(self, model: nn.Module, epoch: int) -> dict[str, float]:
        """Validation metrics after epoch ``epoch`` (0-based); logged to metrics.csv."""
        return {}

    def on_epoch_end(self, model: nn.Module, epoch: int, out_dir: Path) -> None:
        """Write per-epoch artefacts (e.g. reconstruction images)."""

    def stop_reason(self) -> str | None:
        """After an epoch (rank 0): a line saying why to stop early (patience), or None."""
        return None


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    """How to run the loop (what to optimise is the caller's: model, optimizer, scheduler).

    Attributes:
        epochs: total number of epochs of the run (not of this session).
        batch_size: samples per micro-batch per process.
        accumulation: micro-batches per optimizer step.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (torchrun picks the local GPU).
        precision: ``fp32``, ``bf16`` (autocast), ``fp16`` (autocast + grad scaler) or
            ``auto`` (bf16 where the device computes it natively, else fp32; see precision.py).
        compile: wrap the model in ``torch.compile``.
        clip_grad: max grad norm, or None / 0 for no clipping (norm still logged).
        workers: DataLoader worker processes.
        seed: base seed of data order, augmentations and model randomness.
        save_every_steps: also save ``last.pt`` every N optimizer steps (0: epoch ends only).
        log_every_steps: write a metrics row every N optimizer steps (and at each epoch end).
        resume: continue from ``<out>/checkpoints/last.pt`` if it exists.
        stop_at_step: end the session (after saving) once this global step is reached; the
            schedule still spans all ``epochs`` (for time-limited jobs and resume tests).
        progress: show the progress bar.
        find_unused_parameters: DDP option for models whose forward skips some parameters
            (e.g. a detection head used only by some losses); costs a graph walk per step.
    """

    epochs: int
    batch_size: int
    accumulation: int = 1
    device: str = "auto"
    precision: Precision = "fp32"
    compile: bool = False
    clip_grad: float | None = 5.0
    workers: int = 0
    seed: int = 0
    save_every_steps: int = 0
    log_every_steps: int = 10
    resume: bool = False
    stop_at_step: int | None = None
    progress: bool = True
    find_unused_parameters: bool = False

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "accumulation"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("workers", "save_every_steps", "log_every_steps"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.precision not in (*AMP_DTYPES, "auto"):
            raise UserError(f"precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        if self.stop_at_step is not None and self.stop_at_step < 1:
            raise UserError(f"stop_at_step must be >= 1 or None, got {self.stop_at_step}")
        if self.clip_grad is not None and self.clip_grad < 0:
            raise UserError(f"clip_grad must be >= 0 or None, got {self.clip_grad}")

    @classmethod
    def from_options(cls, options: RunOptions, **overrides: Any) -> EngineConfig:
        """The engine part of a train command's config (the one place that copies it)."""
        names = [f.name for f in dataclasses.fields(cls) if hasattr(options, f.name)]
        values = {name: getattr(options, name) for name in names}
        return cls(**{**values, **overrides})


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` did.

    Attributes:
        model: the trained, unwrapped model (on the training device).
        global_step: optimizer steps done in the whole run.
        epochs_completed: full epochs done.
        images_seen: samples consumed by optimizer steps, all ranks together.
        last_loss: mean loss of the last logging window (all ranks).
        history: one dict per completed epoch of this session (train loss, evaluation).
        stopped_early: True when ``stop_at_step`` ended the session before the last epoch.
        precision: what the loop trained in (``auto`` resolved).
        early_stop: why the task stopped the run before its last epoch (patience), or None.
        checkpoint: path of ``last.pt``.
        dist: where this process ran.
        rank_digests: :func:`~simmim_deploy.train.engine.state_digest` of the final weights on
            every rank (all equal; checked).
    """

    model: nn.Module
    global_step: int
    epochs_completed: int
    images_seen: int
    last_loss: float
    history: list[dict[str, float]]
    stopped_early: bool
    checkpoint: Path
    dist: DistInfo
    rank_digests: list[str] = dataclasses.field(default_factory=list)
    precision: str = "fp32"
    early_stop: str | None = None


def steps_per_epoch(num_samples: int, config: EngineConfig, world_size: int | None = None) -> int:
    """Optimizer steps per epoch for a data set of ``num_samples`` (size the schedule with it).

    Each rank sees ``ceil(num_samples / world_size)`` samples per epoch; incomplete micro-batches
    and incomplete accumulation groups at the end of an epoch are dropped.

    Raises:
        UserError: fewer samples than one optimizer step needs.
    """
    world = world_size if world_size is not None else launch().world_size
    per_rank = -(-num_samples // world)
    steps = per_rank // config.batch_size // config.accumulation
    if steps < 1:
        need = config.batch_size * config.accumulation * world
        raise UserError(
            f"{num_samples} samples are too few for one step of batch {config.batch_size} x "
            f"accumulation {config.accumulation} x {world} process(es) = {need}; "
            "lower --batch-size or add images"
        )
    return steps


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def move_to(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested list/tuple/dict) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, list):
        return [move_to(v, device) for v in batch]
    if isinstance(batch, tuple):
        moved = [move_to(v, device) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else tuple(moved)
    return batch
