"""The part every train command shares between "data and model built" and :func:`fit`.

Steps per epoch -> the budget (:mod:`simmim_deploy.train.budget`: epochs, warmup, validation
cadence, patience) -> the engine config -> optimizer and schedule
(:mod:`simmim_deploy.train.optimization`) -> the resolved ``config.yaml`` (rank 0). The lines
it returns say what was chosen; pass them to ``fit(notes=...)``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from torch import nn

from simmim_deploy.core.config import save_config
from simmim_deploy.train import distributed as dist
from simmim_deploy.train.budget import apply_budget
from simmim_deploy.train.engine_config import EngineConfig, steps_per_epoch
from simmim_deploy.train.optimization import Optimization, build_optimization


@dataclasses.dataclass(frozen=True)
class PreparedRun:
    """A run ready for :func:`~simmim_deploy.train.engine.fit`.

    Attributes:
        config: the command's config with the budget resolved (what ``config.yaml`` records).
        engine: the engine's part of it.
        optimization: optimizer, schedule and the LR derivation.
        notes: lines to print at the start (budget, LR).
    """

    config: Any
    engine: EngineConfig
    optimization: Optimization
    notes: tuple[str, ...]


def prepare_run(
    config: Any,
    requested_warmup: float | None,
    model: nn.Module,
    num_samples: int,
    *,
    base_epochs: int,
    base_warmup: float,
    **optimizer: Any,
) -> PreparedRun:
    """Resolve the budget, build the optimizer and schedule, write ``OUT/config.yaml``.

    Args:
        config: a train config (``RunOptions`` subclass) with ``lr`` resolved.
        requested_warmup: the warmup the user gave (None: ``base_warmup``), before resolution.
        model: the model to optimise.
        num_samples: training samples (one epoch).
        base_epochs: the command's default epochs.
        base_warmup: the command's default warmup epochs.
        **optimizer: ``build_optimization`` options (weight_decay, layer_decay, betas, ...).
    """
    steps = steps_per_epoch(num_samples, EngineConfig.from_options(config, epochs=1))
    resolved, notes = apply_budget(
        config,
        requested_warmup,
        steps,
        num_samples,
        base_epochs=base_epochs,
        base_warmup=base_warmup,
    )
    opt = build_optimization(model, resolved, steps, **optimizer)
    if dist.is_main():  # before fit starts the process group: the launcher's rank
        Path(resolved.out).mkdir(parents=True, exist_ok=True)
        save_config(resolved, Path(resolved.out) / "config.yaml")
    return PreparedRun(resolved, EngineConfig.from_options(resolved), opt, (*notes, *opt.notes))
