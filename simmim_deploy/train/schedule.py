"""Per-iteration learning-rate schedules of the official recipe (linear warmup, cosine or step).

``lr_at`` is the pure formula (also used by tests); :class:`IterationLR` applies it to every
param group, multiplied by the group's ``lr_scale`` (layer-wise decay), and its ``state_dict``
round-trips so a resumed run continues on the same curve.

Formula (timm ``CosineLRScheduler`` / official ``MultiStepLRScheduler``, ``t_in_epochs=False``)::

    t < warmup:      warmup_lr + t * (base_lr - warmup_lr) / warmup
    cosine:          min_lr + 0.5 * (base_lr - min_lr) * (1 + cos(pi * t / total)), t <= total
    step:            base_lr * gamma ** (number of milestones <= t)

As in the official code, the cosine runs over all ``total`` steps (the warmup overrides its start).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import torch
from torch.optim.lr_scheduler import LRScheduler

from simmim_deploy.core.errors import UserError

KINDS = ("cosine", "step")


def lr_at(
    step: int,
    base_lr: float,
    total_steps: int,
    warmup_steps: int = 0,
    kind: str = "cosine",
    warmup_lr: float = 0.0,
    min_lr: float = 0.0,
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
) -> float:
    """Learning rate at optimiser step ``step`` (0-based) for a group with scale 1."""
    if step < warmup_steps:
        return warmup_lr + step * (base_lr - warmup_lr) / warmup_steps
    if kind == "cosine":
        t = min(step, total_steps)
        return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * t / total_steps))
    if kind == "step":
        return base_lr * gamma ** bisect.bisect_right(sorted(milestones), step)
    raise UserError(f"unknown lr schedule '{kind}'; choose one of {KINDS}")


class IterationLR(LRScheduler):
    """Torch LR scheduler stepping :func:`lr_at` once per optimiser step."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        warmup_steps: int = 0,
        kind: str = "cosine",
        warmup_lr: float = 0.0,
        min_lr: float = 0.0,
        milestones: Sequence[int] = (),
        gamma: float = 0.1,
    ) -> None:
        if kind not in KINDS:
            raise UserError(f"unknown lr schedule '{kind}'; choose one of {KINDS}")
        if total_steps <= 0:
            raise UserError(f"total_steps must be positive, got {total_steps}")
        if not 0 <= warmup_steps <= total_steps:
            raise UserError(f"warmup steps ({warmup_steps}) must lie in [0, {total_steps}]")
        if kind == "step" and milestones and min(milestones) < warmup_steps:
            raise UserError("lr milestones must come after the warmup")
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.kind = kind
        self.warmup_lr = float(warmup_lr)
        self.min_lr = float(min_lr)
        self.milestones = [int(m) for m in milestones]
        self.gamma = float(gamma)
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        lrs = []
        for base, group in zip(self.base_lrs, self.optimizer.param_groups, strict=True):
            scale = float(group.get("lr_scale", 1.0))
            # initial lr = peak * lr_scale (build_optimizer); warmup/min are scaled likewise
            peak = base / scale if scale else base
            lrs.append(scale * self._lr(self.last_epoch, peak))
        return lrs

    def _lr(self, step: int, base_lr: float) -> float:
        return lr_at(
            step,
            base_lr,
            self.total_steps,
            self.warmup_steps,
            self.kind,
            self.warmup_lr,
            self.min_lr,
            self.milestones,
            self.gamma,
        )


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int,
    kind: str = "cosine",
    warmup_lr: float = 5e-7,
    min_lr: float = 5e-6,
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
) -> IterationLR:
    """Build the per-iteration schedule; call ``.step()`` after every optimiser step.

    Defaults ``warmup_lr`` 5e-7 and ``min_lr`` 5e-6 are the official 100-epoch Swin-B
    pre-training values (given per 512 images there; scale them like the base LR).
    """
    return IterationLR(
        optimizer, total_steps, warmup_steps, kind, warmup_lr, min_lr, milestones, gamma
    )
