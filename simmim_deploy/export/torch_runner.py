"""Run a fine-tuned checkpoint's PyTorch model on numpy batches.

The reference every exported artefact is compared with (``verify.py``), and the ``torch``
backend offered by ``simmim-deploy benchmark`` for checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


def load_model(checkpoint: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Load ``(model, meta)`` in eval mode, pruned shapes included, without unpickling code.

    The model is built from ``meta`` with ``pruned_arch`` applied here (not by the task builder),
    so pruned classifiers and detectors reload the same way.
    """
    from simmim_deploy.core.errors import UserError
    from simmim_deploy.export.prune import apply_pruned_arch
    from simmim_deploy.models.factory import build_task_model, read_checkpoint

    ckpt = read_checkpoint(checkpoint)
    if "meta" not in ckpt or "model" not in ckpt:
        raise UserError(
            f"{checkpoint} is not a fine-tuned simmim-deploy checkpoint (no 'meta'/'model'); "
            "export needs the best.pt written by 'simmim-deploy train classify|detect'"
        )
    meta = dict(ckpt["meta"])
    model = build_task_model({**meta, "pruned_arch": None})
    if meta.get("pruned_arch"):
        apply_pruned_arch(model, meta["pruned_arch"])
    model.load_state_dict(ckpt["model"])
    return model.eval(), meta


def output_names(meta: dict[str, Any]) -> list[str]:
    """ONNX output names of a task model, in ``forward`` order."""
    if meta["task"] == "detection":
        return ["boxes", "scores", "labels", "num_detections"]
    return ["logits"]


class TorchRunner:
    """``runner(batch) -> [outputs]`` for a PyTorch model, on CPU, without autograd.

    Args:
        model: task model in eval mode.
        meta: its checkpoint meta.
        threads: torch intra-op threads (None: leave as is).
    """

    def __init__(self, model: nn.Module, meta: dict[str, Any], threads: int | None = None) -> None:
        self.model = model.eval()
        self.meta = meta
        self.names = output_names(meta)
        if threads:
            torch.set_num_threads(threads)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, threads: int | None = None) -> TorchRunner:
        """Load a checkpoint (see :func:`load_model`)."""
        model, meta = load_model(checkpoint)
        return cls(model, meta, threads)

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> list[np.ndarray]:
        """Run one batch.

        Args:
            images: float32 ``(B, 3, S, S)`` preprocessed images.

        Returns:
            One array per output (``logits (B, C)``, or the four detection outputs).
        """
        out = self.model(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)))
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return [o.detach().cpu().numpy() for o in outs]

    def run_batches(self, images: np.ndarray, batch_size: int = 32) -> list[np.ndarray]:
        """Run ``images`` in chunks and concatenate each output along the batch axis."""
        chunks = [self(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        return [np.concatenate([c[k] for c in chunks]) for k in range(len(chunks[0]))]
