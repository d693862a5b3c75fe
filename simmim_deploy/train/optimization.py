"""The one optimizer + LR schedule builder of every train command.

AdamW over the official parameter groups (:mod:`simmim_deploy.train.optim`), learning rates per
512 images turned into the run's by :func:`~simmim_deploy.train.lr_rule.lr_scale`, then the
per-iteration schedule of
:mod:`simmim_deploy.train.schedule`. What was decided is returned as :class:`Optimization`: its
``notes`` are printed at the start of the run and its ``record()`` goes into the run summary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from simmim_deploy.train.distributed import launch
from simmim_deploy.train.lr_rule import LRScale, lr_scale
from simmim_deploy.train.optim import build_optimizer
from simmim_deploy.train.run_options import RunOptions
from simmim_deploy.train.schedule import IterationLR, build_scheduler


@dataclasses.dataclass(frozen=True)
class Optimization:
    """The optimizer, its schedule and how the learning rate was derived.

    Attributes:
        optimizer: AdamW over the parameter groups.
        scheduler: per-iteration schedule (step it after every optimizer step).
        lr: peak learning rate of the run (layer scale 1).
        lr_per_512: the option it came from.
        scale: the scaling rule applied.
        warmup_steps, total_steps: schedule length in optimizer steps.
        notes: lines to print at the start of the run.
    """

    optimizer: torch.optim.Optimizer
    scheduler: IterationLR
    lr: float
    lr_per_512: float
    scale: LRScale
    warmup_steps: int
    total_steps: int
    notes: tuple[str, ...]

    def record(self) -> dict[str, Any]:
        """Plain values for the run summary."""
        return {
            "lr": self.lr,
            "lr_per_512": self.lr_per_512,
            "lr_scaling": self.scale.scaling,
            "lr_rule": self.scale.rule,
            "effective_batch": self.scale.effective_batch,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
        }


def build_optimization(
    model: nn.Module,
    options: RunOptions,
    steps_per_epoch: int,
    *,
    weight_decay: float,
    layer_decay: float | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    kind: str = "cosine",
    milestones: Sequence[float] = (),
    gamma: float = 0.1,
) -> Optimization:
    """AdamW + warmup/cosine (or step) schedule for ``model`` as ``options`` say.

    Args:
        model: the model to optimise.
        options: the run's options with ``lr``, ``epochs`` and ``warmup_epochs`` resolved
            (``train.budget.plan_budget`` fills and caps them).
        steps_per_epoch: optimizer steps per epoch (``engine.steps_per_epoch``).
        weight_decay: AdamW decay of the decayed groups.
        layer_decay: layer-wise LR decay (fine-tuning), None or 1.0 for none.
        betas: Adam betas.
        eps: Adam epsilon.
        kind: ``cosine`` or ``step``.
        milestones: epochs at which the step schedule multiplies the LR by ``gamma``.
        gamma: step-schedule factor.
    """
    if options.lr is None or options.epochs is None or options.warmup_epochs is None:
        raise ValueError("lr, epochs and warmup_epochs must be resolved first (plan_budget)")
    world = launch().world_size
    scale = lr_scale(options.lr_scaling, options.batch_size, world, options.accumulation)
    lr = options.lr * scale.factor
    notes = [scale.explain(options.lr, options.batch_size, world, options.accumulation)]
    total = steps_per_epoch * options.epochs
    warmup = min(int(round(steps_per_epoch * options.warmup_epochs)), total - 1)
    decay = layer_decay if layer_decay not in (None, 1.0) else None
    optimizer = build_optimizer(model, lr, weight_decay, betas, eps, layer_decay=decay)
    scheduler = build_scheduler(
        optimizer,
        total_steps=total,
        warmup_steps=warmup,
        kind=kind,
        warmup_lr=options.warmup_lr * scale.factor,
        min_lr=options.min_lr * scale.factor,
        milestones=[int(round(m * steps_per_epoch)) for m in milestones],
        gamma=gamma,
    )
    return Optimization(optimizer, scheduler, lr, options.lr, scale, warmup, total, tuple(notes))
