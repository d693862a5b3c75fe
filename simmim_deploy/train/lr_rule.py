"""From a recipe's learning rate per 512 images to the learning rate of this run (pure, no torch).

The official SimMIM code scales every LR by ``effective_batch / 512`` (the linear rule of Goyal
et al., 2017, "Accurate, Large Minibatch SGD"), with ``effective_batch = batch x processes x
accumulation``. That is exact for the recipes, which run at 512-2048 images per step, but a
large-batch rule: at the 8-64 images a step people use on one machine it divides the LR by 8-64
and training starves (measured: the classifier wants ~1.25e-3 at batch 32, where linear gives
7.8e-5; the detector ~1e-3 at batch 8, where linear gives 1.25e-5).

``lr_scaling``:

- ``linear``: ``lr x B / 512`` at every batch (the official rule).
- ``sqrt``: ``lr x sqrt(B / 512)`` at every batch (square-root scaling for Adam-type
  optimisers, Malladi et al., 2022, "On the SDEs and Scaling Rules for Adaptive Gradient
  Algorithms").
- ``none``: ``lr`` as given, whatever the batch.
- ``auto`` (default): linear at ``B >= 512``, so the official recipes keep their exact values;
  below 512 the per-512 value is a floor: ``lr x max(1, B / 512)``.

Warmup is capped to :data:`MAX_WARMUP_FRACTION` of the run, so a short run is never all warmup.
"""

from __future__ import annotations

import dataclasses
import math

NOMINAL_BATCH = 512
MAX_WARMUP_FRACTION = 0.2
RULES = ("auto", "linear", "sqrt", "none")


@dataclasses.dataclass(frozen=True)
class LRScale:
    """How the per-512 learning rates become the run's.

    Attributes:
        factor: multiplier applied to ``lr``, ``warmup_lr`` and ``min_lr`` (per 512 images).
        effective_batch: images per optimizer step, all processes together.
        scaling: the ``lr_scaling`` option.
        rule: what was applied: ``linear``, ``sqrt``, ``none`` or ``floor``.
    """

    factor: float
    effective_batch: int
    scaling: str
    rule: str

    def explain(self, lr_per_512: float, batch: int, world: int, accumulation: int) -> str:
        """One line: the effective LR and how it was derived."""
        b = self.effective_batch
        parts = f"{batch} x {world} process(es) x {accumulation} accumulation"
        why = {
            "linear": f"linear rule x {b}/{NOMINAL_BATCH}",
            "sqrt": f"square-root rule x sqrt({b}/{NOMINAL_BATCH})",
            "none": "used as given",
            "floor": f"floor rule below {NOMINAL_BATCH}",
        }[self.rule]
        return (
            f"lr {lr_per_512 * self.factor:.3g} = {lr_per_512:.3g} per {NOMINAL_BATCH} images, "
            f"{why}: effective batch {b} = {parts} (lr-scaling {self.scaling})"
        )


def lr_scale(scaling: str, batch: int, world: int = 1, accumulation: int = 1) -> LRScale:
    """The factor that turns an LR per 512 images into the run's LR.

    Args:
        scaling: ``auto``, ``linear``, ``sqrt`` or ``none`` (see the module docstring).
        batch: images per micro-batch per process.
        world: number of processes.
        accumulation: micro-batches per optimizer step.

    Raises:
        ValueError: unknown ``scaling``.
    """
    b = batch * world * accumulation
    ratio = b / NOMINAL_BATCH
    if scaling == "linear" or (scaling == "auto" and ratio >= 1.0):
        return LRScale(ratio, b, scaling, "linear")
    if scaling == "auto":
        return LRScale(1.0, b, scaling, "floor")
    if scaling == "sqrt":
        return LRScale(math.sqrt(ratio), b, scaling, "sqrt")
    if scaling == "none":
        return LRScale(1.0, b, scaling, "none")
    raise ValueError(f"lr_scaling must be one of {list(RULES)}, got {scaling!r}")


def cap_warmup(warmup_epochs: float, epochs: int) -> tuple[float, str | None]:
    """``warmup_epochs`` capped to :data:`MAX_WARMUP_FRACTION` of ``epochs``.

    Returns:
        ``(warmup_epochs_used, note)``; ``note`` is a log line when it was capped, else None.
    """
    cap = MAX_WARMUP_FRACTION * epochs
    if warmup_epochs <= cap:
        return float(warmup_epochs), None
    note = (
        f"warmup capped to {cap:g} epoch(s) ({MAX_WARMUP_FRACTION:.0%} of {epochs}) from "
        f"{warmup_epochs:g}: a short run would otherwise be mostly warmup"
    )
    return cap, note
