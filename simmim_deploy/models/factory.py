"""Rebuild a fine-tuned task model from its checkpoint, without unpickling code.

A fine-tuned checkpoint (``best.pt`` / ``last.pt``, written by ``simmim_deploy.train``) is a
``torch.save`` of plain containers, loadable with ``weights_only=True``::

    {
      "model": state_dict,                  # the task model's weights (tensors only)
      "meta": {                             # everything export and serving need
        "task": "classification" | "detection",
        "model_name": "vit_small_patch16_224",   # timm name of the encoder
        "img_size": 224,
        "num_classes": 10,
        "class_names": ["0", "1", ...],
        "mean": [...], "std": [...],             # from the encoder's timm data config
        "interpolation": "bicubic",
        "crop_pct": 0.875,                 # eval: resize img/crop_pct, centre-crop img
        "model_kwargs": {...},             # extra timm.create_model kwargs
        "head": {...},                            # task-specific architecture facts (plain values)
        "pruned_arch": {...} | None,              # set by export --prune: per-layer kept dims
      },
      ... resumable training state (optimizer, scheduler, scaler, step, rng) in last.pt ...
    }

Each task registers one builder in :data:`BUILDERS`; a lookup table, not a chain of ifs.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from simmim_deploy.core.errors import UserError

# task -> "module:function"; the function takes ``meta`` and returns an initialised nn.Module.
BUILDERS: dict[str, str] = {
    "classification": "simmim_deploy.models.classifier:build_classifier_from_meta",
    "detection": "simmim_deploy.models.detector:build_detector_from_meta",
}


def build_task_model(meta: dict[str, Any]):  # noqa: ANN201 - returns torch.nn.Module
    """Build the (untrained) task model described by a checkpoint's ``meta``."""
    task = meta.get("task")
    if task not in BUILDERS:
        raise UserError(f"checkpoint has unknown task {task!r}; expected one of {list(BUILDERS)}")
    module_name, fn_name = BUILDERS[task].split(":")
    return getattr(importlib.import_module(module_name), fn_name)(meta)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with one-line errors for missing or foreign files."""
    import torch

    p = Path(path)
    if p.is_dir():
        p = p / "best.pt"
    if not p.is_file():
        raise UserError(f"checkpoint not found: {p}")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means "not our checkpoint"
        raise UserError(f"cannot read checkpoint {p}: {str(exc).splitlines()[0]}") from None


def load_task_checkpoint(path: str | Path):  # noqa: ANN201 - (nn.Module, dict)
    """Load a fine-tuned checkpoint into its model (eval mode). Returns ``(model, meta)``."""
    ckpt = read_checkpoint(path)
    if "meta" not in ckpt or "model" not in ckpt:
        raise UserError(
            f"{path} is not a fine-tuned simmim-deploy checkpoint (no 'meta'/'model'); "
            "export needs the best.pt written by 'simmim-deploy train classify|detect'"
        )
    meta = ckpt["meta"]
    model = build_task_model(meta)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, meta
