"""Preprocessing for the serving runtime: the spec and transforms of ``simmim_deploy.core``.

The one implementation lives in :mod:`simmim_deploy.core.preprocess` (numpy/Pillow, shared with
training's detection letterbox and the export gate); every parameter comes from the bundle's
``manifest["preprocess"]`` (:class:`PreprocessSpec`).
"""

from __future__ import annotations

from simmim_deploy.core.preprocess import (
    PreprocessSpec,
    letterbox,
    normalize,
    preprocess,
    resize_center_crop,
    to_rgb,
)

__all__ = [
    "PreprocessSpec",
    "letterbox",
    "normalize",
    "preprocess",
    "resize_center_crop",
    "to_rgb",
]
