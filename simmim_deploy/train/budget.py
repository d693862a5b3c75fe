"""The run's length and validation cadence, chosen from the data size when not given (pure).

Recipes are written for ImageNet/COCO, where an epoch is hundreds of optimizer steps. On a few
hundred images an epoch is a handful of steps, so the recipe's epoch count is far too short a
run. When ``batch_size`` is not given, it is the command's default (64; detect 16), halved
until an epoch has at least :data:`MIN_STEPS_PER_EPOCH` optimizer steps (64 on 100 images would
be one step an epoch, dropping 36 images each time). When ``epochs`` is not given, a run gets
the command's epochs, or more: its ``AUTO_LENGTH = (min steps, max epochs)``, enough epochs for
that many optimizer steps but at most that many epochs (default :data:`MIN_STEPS`,
:data:`MAX_AUTO_EPOCHS`; classify 2,400 and 400). Warmup is capped to a fifth of the run
(``lr_rule.cap_warmup``). On training sets under :data:`SMALL_DATA` images, early stopping is
on by default (``patience``), and validation runs about :data:`VALIDATIONS` times a run.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from simmim_deploy.train.lr_rule import cap_warmup

MIN_STEPS = 300
MIN_STEPS_PER_EPOCH = 4
MAX_AUTO_EPOCHS = 200
SMALL_DATA = 5000
VALIDATIONS = 50
MIN_PATIENCE = 10


@dataclasses.dataclass(frozen=True)
class Budget:
    """What :func:`plan_budget` chose, and the lines that say why."""

    epochs: int
    warmup_epochs: float
    eval_every: int | None
    patience: int | None
    notes: tuple[str, ...]


def choose_batch(
    batch_size: int | None,
    num_samples: int,
    *,
    default: int,
    world: int = 1,
    accumulation: int = 1,
) -> tuple[int, str | None]:
    """``(batch_size, note)``: the option as given, else ``default`` halved until an epoch of
    ``num_samples`` has :data:`MIN_STEPS_PER_EPOCH` steps (never below 1); ``note`` says why
    when it is not ``default``.

    Args:
        batch_size: the option (None: choose).
        num_samples: training samples, all processes together.
        default: the command's default batch per process.
        world: processes.
        accumulation: micro-batches per optimizer step.
    """
    if batch_size is not None:
        return batch_size, None
    per_rank = -(-num_samples // world)
    batch = default
    while batch > 1 and per_rank // (batch * accumulation) < MIN_STEPS_PER_EPOCH:
        batch //= 2
    if batch == default:
        return batch, None
    return batch, (
        f"batch size {batch} (not given): {num_samples} images make "
        f"{per_rank // (default * accumulation)} step(s) an epoch at the default {default}, "
        f"{per_rank // (batch * accumulation)} at {batch} (--batch-size to set it)"
    )


def plan_budget(
    epochs: int | None,
    warmup_epochs: float | None,
    *,
    base_epochs: int,
    base_warmup: float,
    steps_per_epoch: int,
    num_samples: int,
    eval_every: int | None = None,
    patience: int | None = None,
    validates: bool = True,
    length: tuple[int, int] = (MIN_STEPS, MAX_AUTO_EPOCHS),
) -> Budget:
    """Fill ``epochs``, ``warmup_epochs`` and (when ``validates``) ``eval_every``/``patience``.

    Args:
        epochs: the option (None: choose).
        warmup_epochs: the option (None: ``base_warmup``); capped to a fifth of the run.
        base_epochs: the command's recipe default.
        base_warmup: the command's warmup default.
        steps_per_epoch: optimizer steps per epoch.
        num_samples: training images.
        eval_every: the option (None: choose).
        patience: the option in validations (None: choose; 0: never stop early).
        validates: the command validates (fine-tuning); pre-training does not.
        length: ``(min steps, max epochs)`` of a run whose ``epochs`` is not given.
    """
    notes = []
    if epochs is None:
        min_steps, max_epochs = length
        wanted = min(math.ceil(min_steps / steps_per_epoch), max_epochs)
        epochs = max(base_epochs, wanted)
        if epochs > base_epochs:
            notes.append(
                f"epochs {epochs} (not given): {num_samples} images make {steps_per_epoch} "
                f"step(s) an epoch, so the default {base_epochs} epochs would be only "
                f"{base_epochs * steps_per_epoch} steps; this run has {epochs * steps_per_epoch}"
            )
    used, capped = cap_warmup(base_warmup if warmup_epochs is None else warmup_epochs, epochs)
    if capped:
        notes.append(capped)
    if not validates:
        return Budget(epochs, used, eval_every, patience, tuple(notes))
    if eval_every is None:
        eval_every = max(1, epochs // VALIDATIONS)
    if patience is None:
        small = num_samples < SMALL_DATA
        rounds = max(1, epochs // eval_every)
        # a third of the run: small validation sets are noisy (measured: a fifth stopped tuned
        # 100-image runs while their val loss still fell, -2.7 points; README, small data)
        patience = max(MIN_PATIENCE, rounds // 3) if small else 0
        if small:
            notes.append(
                f"early stopping on ({num_samples} < {SMALL_DATA} training images): after "
                f"{patience} validations without progress (a better score, or for classify a "
                "lower val loss; --patience 0: off)"
            )
    return Budget(epochs, used, eval_every, patience, tuple(notes))


def apply_budget(
    config: Any,
    requested_warmup: float | None,
    steps_per_epoch: int,
    num_samples: int,
    *,
    base_epochs: int,
    base_warmup: float,
    length: tuple[int, int] = (MIN_STEPS, MAX_AUTO_EPOCHS),
) -> tuple[Any, tuple[str, ...]]:
    """``(config with the budget filled in, notes)`` for a train config dataclass.

    ``requested_warmup`` is the warmup the user gave (None: ``base_warmup``), before any
    resolution; fine-tuning configs (with ``patience``) also get ``eval_every``/``patience``.
    """
    validates = hasattr(config, "patience")
    plan = plan_budget(
        config.epochs,
        requested_warmup,
        base_epochs=base_epochs,
        base_warmup=base_warmup,
        steps_per_epoch=steps_per_epoch,
        num_samples=num_samples,
        eval_every=getattr(config, "eval_every", None),
        patience=getattr(config, "patience", None),
        validates=validates,
        length=length,
    )
    values: dict[str, Any] = {"epochs": plan.epochs, "warmup_epochs": plan.warmup_epochs}
    if validates:
        values.update(eval_every=plan.eval_every, patience=plan.patience)
    return dataclasses.replace(config, **values), plan.notes
