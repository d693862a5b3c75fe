"""The part every train command shares between "data and model built" and :func:`fit`.

Steps per epoch -> the budget (:mod:`simmim_deploy.train.budget`: epochs, warmup, validation
cadence, patience) -> the engine config -> optimizer and schedule
(:mod:`simmim_deploy.train.optimization`) -> the resolved ``config.yaml`` (rank 0). The lines
it returns say what was chosen; pass them to ``fit(notes=...)``.

The fine-tuning commands (classify, detect) also share :class:`FinetuneTask` (validation
cadence, ``best.pt``, early stopping) and :func:`finetune_summary` (the keys of their
``metrics.json``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from simmim_deploy.core.config import save_config
from simmim_deploy.core.run_summary import RunSummary
from simmim_deploy.train import distributed as dist
from simmim_deploy.train.budget import apply_budget, choose_batch
from simmim_deploy.train.checkpointing import BestCheckpoint
from simmim_deploy.train.distributed import launch
from simmim_deploy.train.engine_config import EngineConfig, FitResult, TrainTask, steps_per_epoch
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
    world = launch().world_size
    batch, batch_note = choose_batch(
        config.batch_size,
        num_samples,
        default=config.DEFAULT_BATCH,
        world=world,
        accumulation=config.accumulation,
    )
    config = dataclasses.replace(config, batch_size=batch)
    steps = steps_per_epoch(num_samples, EngineConfig.from_options(config, epochs=1), world)
    resolved, notes = apply_budget(
        config,
        requested_warmup,
        steps,
        num_samples,
        base_epochs=base_epochs,
        base_warmup=base_warmup,
        length=config.AUTO_LENGTH,
    )
    opt = build_optimization(model, resolved, steps, **optimizer)
    if dist.is_main():  # before fit starts the process group: the launcher's rank
        Path(resolved.out).mkdir(parents=True, exist_ok=True)
        save_config(resolved, Path(resolved.out) / "config.yaml")
    notes = (batch_note, *notes) if batch_note else notes
    return PreparedRun(resolved, EngineConfig.from_options(resolved), opt, (*notes, *opt.notes))


class FinetuneTask(TrainTask):
    """A fine-tuning task: validated every ``eval_every`` epochs and after the last (in fp32),
    the best weights kept in ``best.pt`` by ``keeper``, stopped early after ``patience``.

    Subclasses implement ``loss`` and :meth:`score`; :meth:`on_best` runs after ``best.pt``
    was replaced.

    Args:
        config: the command's config (``eval_every``, ``patience``, ``epochs`` resolved).
        meta: the checkpoint meta stored in ``best.pt``.
        keeper: where the best weights go and which score decides.
        label: the score's name in the early-stopping line, e.g. ``"val top-1"``.
    """

    def __init__(self, config: Any, meta: dict[str, Any], keeper: BestCheckpoint, label: str):
        self.cfg, self.meta, self.keeper, self.label = config, meta, keeper, label
        self.last: dict[str, Any] = {}

    @property
    def best(self) -> dict[str, Any]:
        """Scores of the best validation so far."""
        return self.keeper.best

    def score(self, model: nn.Module, device: torch.device) -> tuple[dict, dict[str, float]]:
        """``(metrics, logged)``: the validation scores and the few that go to metrics.csv."""
        raise NotImplementedError

    def on_best(self) -> None:
        """Called after a validation set a new best (``best.pt`` written)."""

    def evaluate(self, model: nn.Module, epoch: int) -> dict[str, float]:
        done = epoch + 1
        if done % self.cfg.eval_every and done != self.cfg.epochs:
            return {}
        device = next(model.parameters()).device
        with torch.autocast(device.type, enabled=False):  # score in fp32 whatever the training
            metrics, logged = self.score(model, device)
        metrics["epoch"] = done
        self.last = metrics
        if self.keeper.update(model, self.meta, metrics):
            self.on_best()
        return logged

    def stop_reason(self) -> str | None:
        done = int(self.last.get("epoch") or 0)
        return self.keeper.patience_spent(self.cfg.patience, self.label, done, self.cfg.epochs)


def finetune_summary(
    command: str,
    task: FinetuneTask,
    result: FitResult,
    run: PreparedRun,
    data: str,
    counts: tuple[int, int],
    skipped_files: int,
    **extra: Any,
) -> RunSummary:
    """The run summary (``metrics.json``) of ``train classify|detect``: the best validation's
    scores (the keys ``evaluate`` writes), then how the run went.

    Args:
        command: ``classify`` or ``detect``.
        counts: ``(train images, val images)``.
        skipped_files: files left out as unreadable (listed in ``skipped.txt``).
        extra: the command's own :class:`RunSummary` fields (``mode``, ``class_counts``).
    """
    best = task.best or task.last
    cfg = run.config
    return RunSummary(
        command=command,
        out=str(cfg.out),
        completed=not result.stopped_early,
        global_step=result.global_step,
        epochs_completed=result.epochs_completed,
        images_seen=result.images_seen,
        precision=result.precision,
        lr_plan=run.optimization.record(),
        model=cfg.model,
        data=data,
        train_images=counts[0],
        skipped_files=skipped_files,
        best=dict(best),
        best_epoch=best.get("epoch"),
        last=task.keeper.kept(task.last),
        early_stop=result.early_stop,
        checkpoint=str(task.keeper.path),
        pretrained=cfg.pretrained,
        val_images=counts[1],
        **extra,
    )
