"""``evaluate_checkpoint``: score a fine-tuned ``best.pt`` on labelled data, whatever its task.

The checkpoint's ``meta["task"]`` picks the evaluator from :data:`EVALUATORS` (a lookup table,
not a chain of ifs). Every evaluator has the signature
``(model, meta, data, out_dir, device, batch_size) -> dict`` and writes ``metrics.json`` (plus
its plots) into ``out_dir`` when one is given.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

from simmim_deploy.core.config import option
from simmim_deploy.core.errors import UserError

# task -> "module:function"; imported lazily so detection code loads only for detection.
EVALUATORS: dict[str, str] = {
    "classification": "simmim_deploy.train.classify_eval:evaluate_classification",
    "detection": "simmim_deploy.train.detect_eval:evaluate_detection",
}


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """What ``simmim-deploy evaluate`` needs (help text in each field's metadata)."""

    checkpoint: str = option(
        help="best.pt (or the run folder) of train classify|detect.",
        positional=True,
        old_flags=("--checkpoint",),
    )
    data: str = option(help="Labelled data: builtin:NAME (its held-out part), a folder, ...")
    out: str | None = option(
        None, "Where metrics.json and plots go (default: RUN/eval beside the checkpoint)."
    )
    device: str = option("auto", "cpu, cuda, cuda:N or auto (CUDA when present).")
    batch_size: int = option(64, "Images per forward pass.")

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {self.batch_size}")

    def out_dir(self) -> Path:
        """``--out``, else ``RUN/eval`` beside ``RUN/best.pt`` (never the training metrics)."""
        if self.out is not None:
            return Path(self.out)
        checkpoint = Path(self.checkpoint)
        return (checkpoint if checkpoint.is_dir() else checkpoint.parent) / "eval"


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str,
    out_dir: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 64,
) -> dict[str, Any]:
    """Load a fine-tuned checkpoint and score it on ``data``.

    Args:
        checkpoint: ``best.pt`` / ``last.pt`` of ``train classify|detect`` (or its run folder).
        data: labelled data of the checkpoint's task (``builtin:NAME``, a folder, ...).
        out_dir: where ``metrics.json`` and plots go (None: nothing is written).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: images per forward pass.

    Returns:
        The evaluator's metrics (classification: top1, top5, macro_f1, per_class, ...),
        with ``task`` and ``checkpoint`` added.

    Raises:
        UserError: unreadable checkpoint, unknown task, or unusable data.
    """
    import torch

    from simmim_deploy.models.factory import load_task_checkpoint
    from simmim_deploy.train.distributed import resolve_device

    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}")
    model, meta = load_task_checkpoint(checkpoint)
    task = meta.get("task")
    if task not in EVALUATORS:
        raise UserError(f"no evaluator for task {task!r}; expected one of {list(EVALUATORS)}")
    module_name, fn_name = EVALUATORS[task].split(":")
    evaluator = getattr(importlib.import_module(module_name), fn_name)
    dev = resolve_device(device)
    model.to(dev).eval()
    with torch.no_grad():
        metrics = evaluator(model, meta, data, out_dir, dev, batch_size)
    return {"task": task, "checkpoint": str(checkpoint), **metrics}
