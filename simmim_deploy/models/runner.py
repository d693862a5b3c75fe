"""Run a fine-tuned checkpoint's PyTorch model on numpy batches.

The reference every exported artefact is compared with (``export/verify.py``), and what the
``torch`` backend of ``predict``/``serve``/``benchmark`` runs (:mod:`.torch_backend`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


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
        """Load a checkpoint (:func:`simmim_deploy.models.factory.load_task_checkpoint`)."""
        from simmim_deploy.models.factory import load_task_checkpoint

        model, meta = load_task_checkpoint(checkpoint)
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
