"""What a command was pointed at: a bundle, or a checkpoint that runs through PyTorch.

``predict``, ``serve`` and ``benchmark`` take either; the one rule that tells them apart is
:func:`simmim_deploy.core.manifest.is_checkpoint`. Torch is imported only for a checkpoint or
``--backend torch``, so serving a bundle stays torch-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simmim_deploy.core.errors import UserError


def open_target(path: str | Path, backend: str | None, threads: int | None) -> tuple[Any, Any]:
    """``(torch backend, manifest)`` for a checkpoint or ``--backend torch``, else ``(None, None)``.

    A bundle with ``--backend torch`` runs its source checkpoint; a checkpoint always runs
    through PyTorch (it has no exported files).
    """
    from simmim_deploy.core.manifest import is_checkpoint

    if backend != "torch" and not is_checkpoint(path):
        return None, None
    try:  # models/ imports torch and timm on import
        from simmim_deploy.models.torch_backend import open_torch_backend
    except ImportError as exc:
        raise UserError(
            f"a checkpoint or --backend torch needs PyTorch and timm ({exc}): pip install "
            "simmim-deploy with torch, or give an exported bundle"
        ) from None
    return open_torch_backend(path, threads)
