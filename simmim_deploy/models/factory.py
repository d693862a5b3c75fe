"""The one loader of fine-tuned checkpoints: rebuild the task model, without unpickling code.

A fine-tuned checkpoint (``best.pt`` / ``last.pt``, written by ``simmim_deploy.train``; the
``pruned.pt`` of ``export --prune``) is a ``torch.save`` of plain containers, loadable with
``weights_only=True``: ``{"model": state_dict, "meta": CheckpointMeta.to_dict(), ...}`` (the
meta's fields: :class:`simmim_deploy.core.checkpoint_meta.CheckpointMeta`), plus the resumable
training state in ``last.pt``. :func:`load_task_checkpoint` builds the model its meta describes
(one builder per task in :data:`BUILDERS`, a lookup table, not a chain of ifs), gives it the
pruned shapes when ``pruned_arch`` is set, and loads the weights.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from simmim_deploy.core.checkpoint_meta import CheckpointMeta
from simmim_deploy.core.errors import UserError

# task -> "module:function"; the function takes ``meta`` and returns an initialised nn.Module.
BUILDERS: dict[str, str] = {
    "classification": "simmim_deploy.models.classifier:build_classifier_from_meta",
    "detection": "simmim_deploy.models.detector:build_detector_from_meta",
}


def build_task_model(meta: dict[str, Any]):  # noqa: ANN201 - returns torch.nn.Module
    """Build the (untrained, unpruned) task model described by a checkpoint's ``meta``."""
    task = meta.get("task")
    if task not in BUILDERS:
        raise UserError(f"checkpoint has unknown task {task!r}; expected one of {list(BUILDERS)}")
    module_name, fn_name = BUILDERS[task].split(":")
    return getattr(importlib.import_module(module_name), fn_name)(meta)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with one-line errors for missing or foreign files.

    ``path`` may be a run folder (its ``best.pt``). A file that is not a PyTorch zip archive
    (what ``torch.save`` writes) is refused before torch sees it, so the message never ends in
    torch's advice to retry with ``weights_only=False`` (which would run pickled code).
    """
    import zipfile

    import torch

    p = Path(path)
    if p.is_dir():
        p = p / "best.pt"
    if not p.is_file():
        raise UserError(f"checkpoint not found: {p}")
    if p.suffix == ".safetensors":
        raise UserError(
            f"{p} holds encoder weights, not a fine-tuned checkpoint: fine-tune it first with "
            f"simmim-deploy train classify or train detect --pretrained {p}"
        )
    if not zipfile.is_zipfile(p):
        raise UserError(f"not a checkpoint: {p} (not a PyTorch zip archive)")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means "not our checkpoint"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc):  # pickled objects: refused, never retried unsafely
            first = "it holds pickled objects, which simmim-deploy never loads"
        raise UserError(f"cannot read checkpoint {p}: {first[:200]}") from None
    if not isinstance(ckpt, dict):
        raise UserError(f"not a checkpoint: {p} (holds a {type(ckpt).__name__}, not a dict)")
    return ckpt


def read_task_checkpoint(path: str | Path) -> tuple[dict[str, Any], CheckpointMeta]:
    """``(checkpoint, meta)`` of a fine-tuned checkpoint, its meta parsed and checked.

    Raises:
        UserError: not a checkpoint, a pre-training checkpoint, or no weights/meta.
    """
    ckpt = read_checkpoint(path)
    if "meta" not in ckpt or "model" not in ckpt:
        raise UserError(
            f"{path} is not a fine-tuned simmim-deploy checkpoint (no 'meta'/'model'); "
            "use the best.pt written by 'simmim-deploy train classify|detect'"
        )
    return ckpt, CheckpointMeta.from_dict(ckpt["meta"], str(path))


def load_task_checkpoint(path: str | Path):  # noqa: ANN201 - (nn.Module, dict)
    """Load a fine-tuned (possibly pruned) checkpoint into its model, in eval mode.

    Returns:
        ``(model, meta)``, ``meta`` as :meth:`CheckpointMeta.to_dict` gives it.
    """
    ckpt, meta = read_task_checkpoint(path)
    model = build_task_model(meta.to_dict())
    if meta.pruned_arch:
        from simmim_deploy.models.pruned_arch import apply_pruned_arch

        apply_pruned_arch(model, meta.pruned_arch)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise UserError(
            f"{path}: weights do not fit the model its meta describes "
            f"({str(exc).splitlines()[0][:160]})"
        ) from None
    model.eval()
    return model, meta.to_dict()
