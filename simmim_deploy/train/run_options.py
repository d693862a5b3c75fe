"""Options every ``train`` command shares, declared once: the budget, the LR schedule, how to run.

``ClassifyConfig``, ``DetectConfig`` and ``PretrainConfig`` inherit :class:`RunOptions`; a
command that needs another default redeclares the field with
:func:`~simmim_deploy.core.config.redefault`, keeping its help text. The CLI options, recipe keys
and ``--help`` defaults are generated from these fields (``simmim_deploy.cli.options``).

Learning rates (``lr``, ``warmup_lr``, ``min_lr``) are per 512 images, as in the official SimMIM
code; :func:`simmim_deploy.train.optim.effective_lr` turns them into the LR of the run.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

from simmim_deploy.core.config import flag_for, option
from simmim_deploy.core.errors import UserError
from simmim_deploy.data.aug_presets import AugChoice

Precision = Literal["auto", "fp32", "bf16", "fp16"]
LRScaling = Literal["auto", "linear", "sqrt", "none"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunOptions:
    """The shared part of every train config (see the module docstring)."""

    DEFAULT_BATCH: ClassVar[int] = 64  # batch_size when not given (halved on small sets)
    # epochs not given: at least this many optimizer steps, in at most this many epochs
    AUTO_LENGTH: ClassVar[tuple[int, int]] = (300, 200)

    epochs: int | None = option(
        None,
        "Passes over the training data (default: the command's, or more on small data so the "
        "run has at least 300 optimizer steps, at most 200 epochs).",
    )
    batch_size: int | None = option(
        None,
        "Images per step per process (effective batch = batch x processes x accumulation; "
        "default 64, detect 16, halved on small sets until an epoch has 4 steps).",
    )
    accumulation: int = option(1, "Micro-batches per optimizer step.")
    lr: float | None = option(
        None, "Peak learning rate per 512 images, scaled to the effective batch by --lr-scaling."
    )
    lr_scaling: LRScaling = option(
        "auto",
        "How lr per 512 images becomes the run's LR: linear (x batch/512), sqrt, none (lr as "
        "given), auto (linear at batch >= 512, the per-512 value as a floor below).",
    )
    warmup_epochs: float | None = option(
        None, "Linear warmup from warmup-lr, in epochs; capped to a fifth of the run."
    )
    warmup_lr: float = option(5e-7, "LR at the start of the warmup, per 512 images.")
    min_lr: float = option(5e-6, "LR at the end of the cosine schedule, per 512 images.")
    aug: AugChoice = option(
        "auto",
        "Geometric augmentation: natural (horizontal flip: photos), orientation-free (+ vertical "
        "flip, 90-degree rotations: microscopy, aerial, documents), none (digits, text); auto: "
        "orientation-free for small dense training boxes (detection), else natural.",
    )
    clip_grad: float | None = option(5.0, "Max gradient norm (0: no clipping).")
    device: str = option("auto", "cpu, cuda, cuda:N or auto (CUDA when present).")
    precision: Precision = option(
        "auto",
        "auto: bf16 autocast where the hardware has native bf16 (CUDA compute >= 8.0, CPU "
        "AMX-BF16/AVX512-BF16), else fp32; or fp32, bf16, fp16 (with a grad scaler).",
    )
    seed: int = option(0, "Random seed of data order, augmentation and initialisation.")
    workers: int = option(2, "DataLoader worker processes.")
    compile: bool = option(False, "Wrap the model in torch.compile.")
    resume: bool = option(False, "Continue the run in --out from its last.pt.")
    save_every_steps: int = option(0, "Also save last.pt every N optimizer steps (0: epochs).")
    log_every_steps: int = option(10, "Write a metrics.csv row every N optimizer steps.")
    stop_at_step: int | None = option(
        None, "End this session after global step N (the schedule still spans every epoch)."
    )
    progress: bool = option(True, "Show the progress bar.")

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "accumulation"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"{flag_for(self, name)} must be at least 1, got {value}")
        for name in ("workers", "save_every_steps", "log_every_steps"):
            if getattr(self, name) < 0:
                raise UserError(f"{flag_for(self, name)} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "warmup_lr", "min_lr", "clip_grad"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise UserError(f"{flag_for(self, name)} must be >= 0, got {value}")
        epochs = self.epochs if self.epochs is not None else float("inf")
        if self.warmup_epochs is not None and not 0 <= self.warmup_epochs < epochs:
            warmup_flag, epochs_flag = flag_for(self, "warmup_epochs"), flag_for(self, "epochs")
            raise UserError(
                f"{warmup_flag} ({self.warmup_epochs}) must lie in [0, {epochs_flag}={self.epochs})"
            )
        if self.stop_at_step is not None and self.stop_at_step < 1:
            raise UserError(
                f"{flag_for(self, 'stop_at_step')} must be >= 1, got {self.stop_at_step}"
            )


@dataclasses.dataclass(frozen=True, kw_only=True)
class FinetuneOptions(RunOptions):
    """What the fine-tuning commands (classify, detect) add: validation cadence, early stopping."""

    eval_every: int | None = option(
        None, "Validate every N epochs and after the last (default: about 50 times a run)."
    )
    patience: int | None = option(
        None,
        "Stop after N validations without progress (a better score; classify: or a lower val "
        "loss), never in the first half of the run; "
        "best.pt keeps the best (0: never; default: on for training sets under 5,000 images, "
        "max(10, a third of the validations)).",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.eval_every is not None and self.eval_every < 1:
            raise UserError(
                f"{flag_for(self, 'eval_every')} must be at least 1, got {self.eval_every}"
            )
        if self.patience is not None and self.patience < 0:
            raise UserError(f"{flag_for(self, 'patience')} must be >= 0, got {self.patience}")
