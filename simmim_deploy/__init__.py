"""simmim-deploy: SimMIM pre-training, fine-tuning, export and serving for timm encoders.

The public Python API is imported lazily so that ``import simmim_deploy`` (and the edge runtime
under ``simmim_deploy.serve``) does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "MaskGenerator": "simmim_deploy.data.masking",
    "SimMIM": "simmim_deploy.models.simmim",
    "build_simmim": "simmim_deploy.models.simmim",
    "simmim_loss": "simmim_deploy.models.loss",
}

__all__ = ["MaskGenerator", "SimMIM", "__version__", "build_simmim", "simmim_loss"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'simmim_deploy' has no attribute {name!r}")
