"""The PyTorch backend for ``predict``/``serve``/``benchmark`` (the CLI and the demo plug it in).

The edge runtime (``simmim_deploy.serve``) never imports torch; this adapter wraps
:class:`simmim_deploy.models.runner.TorchRunner` in the serving ``Backend`` interface and builds
the manifest a checkpoint lacks. Imported only when ``--backend torch`` or a checkpoint is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from simmim_deploy.core.errors import UserError


class TorchBackend:
    """``Backend`` over a ``TorchRunner`` (CPU, eager, FP32)."""

    def __init__(self, runner: Any, size: int, checkpoint: str) -> None:
        self.runner, self.checkpoint = runner, checkpoint
        self._input_shape = (None, 3, size, size)

    @property
    def input_shape(self) -> tuple[int | None, int, int, int]:
        return self._input_shape

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.runner.names, self.runner(batch), strict=True))

    def describe(self) -> dict[str, Any]:
        import torch

        return {
            "backend": "pytorch",
            "version": torch.__version__,
            "file": Path(self.checkpoint).name,
            "precision": "fp32",
            "device": "cpu",
            "intra_op_threads": torch.get_num_threads(),
        }


def open_torch_backend(
    bundle_or_checkpoint: str | Path, threads: int | None = None
) -> tuple[TorchBackend, dict[str, Any]]:
    """``(backend, manifest)`` for a checkpoint, or for a bundle's source checkpoint."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UserError("--backend torch needs PyTorch: pip install torch") from None
    from simmim_deploy.core.manifest import checkpoint_manifest, is_checkpoint, read_manifest

    path = Path(bundle_or_checkpoint)
    if is_checkpoint(path):
        checkpoint, manifest = str(path), None
    else:
        manifest = read_manifest(path)
        checkpoint = str((manifest.get("source_checkpoint") or {}).get("path", ""))
        if not Path(checkpoint).is_file():
            raise UserError(
                f"--backend torch needs the bundle's source checkpoint, not found at "
                f"{checkpoint or '(none recorded)'}; pass the checkpoint instead of the bundle"
            )
    from simmim_deploy.core.checkpoint_meta import CheckpointMeta
    from simmim_deploy.models.runner import TorchRunner

    runner = TorchRunner.from_checkpoint(checkpoint, threads)
    if manifest is None:
        facts = checkpoint_manifest(CheckpointMeta.from_dict(runner.meta, checkpoint))
        manifest = {**facts.to_dict(), "outputs": [{"name": n} for n in runner.names]}
    size = int(manifest["input"]["shape"][2])
    return TorchBackend(runner, size, checkpoint), manifest
