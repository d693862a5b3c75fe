"""Per-iteration learning-rate schedules of the official recipe (linear warmup, cosine or step).

:class:`LRSchedule` is the pure formula (``lr_at``: one value of it); :class:`IterationLR`
applies it to every param group, multiplied by the group's ``lr_scale`` (layer-wise decay), and
its ``state_dict`` round-trips so a resumed run continues on the same curve.

Formula (timm ``CosineLRScheduler`` / official ``MultiStepLRScheduler``, ``t_in_epochs=False``)::

    t < warmup:      warmup_lr + t * (base_lr - warmup_lr) / warmup
    cosine:          min_lr + 0.5 * (base_lr - min_lr) * (1 + cos(pi * t / total)), t <= total
    step:            base_lr * gamma ** (number of milestones <= t)

As in the official code, the cosine runs over all ``total`` steps (the warmup overrides its start).
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from simmim_deploy.core.errors import UserError

KINDS = ("cosine", "step")


@dataclasses.dataclass(frozen=True)
class LRSchedule:
    """The curve of one run for a param group of scale 1 (the formula in the module docstring).

    Attributes:
        total_steps: optimiser steps of the whole run (the cosine spans them all).
        warmup_steps: linear warmup steps from ``warmup_lr``.
        kind: ``cosine`` or ``step``.
        warmup_lr, min_lr: LR at the start of the warmup and at the end of the cosine.
        milestones: ``step``: the steps where the LR is multiplied by ``gamma``.
        gamma: ``step``: the factor at each milestone.
    """

    total_steps: int
    warmup_steps: int = 0
    kind: str = "cosine"
    warmup_lr: float = 0.0
    min_lr: float = 0.0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UserError(f"unknown lr schedule '{self.kind}'; choose one of {KINDS}")
        if self.total_steps <= 0:
            raise UserError(f"total_steps must be positive, got {self.total_steps}")
        if not 0 <= self.warmup_steps <= self.total_steps:
            raise UserError(
                f"warmup steps ({self.warmup_steps}) must lie in [0, {self.total_steps}]"
            )
        if self.kind == "step" and self.milestones and min(self.milestones) < self.warmup_steps:
            raise UserError("lr milestones must come after the warmup")
        object.__setattr__(self, "milestones", tuple(sorted(int(m) for m in self.milestones)))

    def lr(self, step: int, base_lr: float) -> float:
        """Learning rate at optimiser step ``step`` (0-based) for peak ``base_lr``."""
        if step < self.warmup_steps:
            return self.warmup_lr + step * (base_lr - self.warmup_lr) / self.warmup_steps
        if self.kind == "cosine":
            t = min(step, self.total_steps)
            cos = 1.0 + math.cos(math.pi * t / self.total_steps)
            return self.min_lr + 0.5 * (base_lr - self.min_lr) * cos
        return base_lr * self.gamma ** bisect.bisect_right(self.milestones, step)


def lr_at(step: int, base_lr: float, total_steps: int, **shape: Any) -> float:
    """Learning rate at ``step`` of the :class:`LRSchedule` ``(total_steps, **shape)``."""
    return LRSchedule(total_steps, **shape).lr(step, base_lr)


class IterationLR(LRScheduler):
    """Torch LR scheduler stepping an :class:`LRSchedule` once per optimiser step.

    Its ``state_dict`` holds only plain values (it loads with ``weights_only=True``).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: LRSchedule) -> None:
        self.schedule = schedule
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        lrs = []
        for base, group in zip(self.base_lrs, self.optimizer.param_groups, strict=True):
            scale = float(group.get("lr_scale", 1.0))
            # initial lr = peak * lr_scale (build_optimizer); warmup/min are scaled likewise
            peak = base / scale if scale else base
            lrs.append(scale * self.schedule.lr(self.last_epoch, peak))
        return lrs

    def state_dict(self) -> dict[str, Any]:
        state = {k: v for k, v in super().state_dict().items() if k != "schedule"}
        return {**state, "schedule": dataclasses.asdict(self.schedule)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        saved = state.pop("schedule", None)
        super().load_state_dict(state)
        if saved is not None:
            self.schedule = LRSchedule(**saved)


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0, **shape: Any
) -> IterationLR:
    """The per-iteration schedule (:class:`LRSchedule` fields as keywords); call ``.step()``
    after every optimiser step.

    The official 100-epoch Swin-B pre-training uses ``warmup_lr`` 5e-7 and ``min_lr`` 5e-6
    (per 512 images there; scale them like the base LR).
    """
    return IterationLR(optimizer, LRSchedule(total_steps, warmup_steps, **shape))
