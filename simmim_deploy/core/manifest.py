"""The deployment bundle's ``manifest.json``: the single source of truth for serving.

Written by ``simmim_deploy.export``, read by ``simmim_deploy.serve`` (which never imports torch),
so this module depends on the standard library only.

Schema (``format_version`` 1)::

    {
      "format_version": 1,
      "task": "classification" | "detection",
      "model_name": "vit_small_patch16_224",            # timm name
      "class_names": ["cat", "dog", ...],
      "input": {"name": "images", "shape": ["batch", 3, H, W], "dtype": "float32",
                "layout": "NCHW", "channel_order": "RGB"},
      "preprocess": {
          "mode": "resize_center_crop" | "letterbox",
          "resize": 256,              # resize_center_crop: shorter side -> this many pixels
          "crop": 224,                # resize_center_crop: centre crop size
          "size": 224,                # letterbox: longer side -> size, pad bottom/right
          "interpolation": "bicubic" | "bilinear",
          "scale": 0.00392156862745098,   # 1/255, applied before mean/std
          "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
          "pad_value": 0.0            # letterbox: value of padded pixels AFTER normalisation
      },
      "outputs": [{"name": "logits", "shape": ["batch", C], "dtype": "float32",
                   "meaning": "class logits; softmax gives probabilities"}],
      # detection outputs: boxes (batch, K, 4) xyxy in network-input pixels, scores (batch, K),
      # labels (batch, K) int64, num_detections (batch,) int64; padded rows have score 0.
      "artefacts": {"fp32": {"file": "model.onnx", "sha256": "...", "bytes": 0,
                              "precision": "fp32", "float_ops": [], "verified": true}, ...},
      "engines": [{"file": "...", "compute_capability": "8.9", "tensorrt_version": "10.13",
                   "precision": "fp16", "batch": [1, 8, 32], "sha256": "..."}],
      "batch": {"min": 1, "opt": 8, "max": 32},
      "calibration": {"sha256": "...", "num_images": 512, "method": "minmax", "scope": "linear"},
      "source_checkpoint": {"path": "...", "sha256": "..."},
      "versions": {"simmim_deploy": "...", "torch": "...", "onnx": "...", ...},
      "created": "2026-11-27T23:00:00Z"
    }
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from simmim_deploy.core.atomic import atomic_write_text
from simmim_deploy.core.errors import UserError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
TASKS = ("classification", "detection")
_REQUIRED = ("format_version", "task", "class_names", "input", "preprocess", "outputs", "artefacts")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def validate_manifest(manifest: dict[str, Any], where: str = "manifest") -> dict[str, Any]:
    """Check the keys serving relies on; raise a one-line :class:`UserError` otherwise."""
    missing = [k for k in _REQUIRED if k not in manifest]
    if missing:
        raise UserError(f"{where} is missing {', '.join(missing)}; re-run simmim-deploy export")
    if manifest["format_version"] != FORMAT_VERSION:
        raise UserError(
            f"{where} has format_version {manifest['format_version']}, this simmim-deploy reads "
            f"{FORMAT_VERSION}; re-export the bundle with this version"
        )
    if manifest["task"] not in TASKS:
        raise UserError(f"{where}: unknown task {manifest['task']!r} (expected one of {TASKS})")
    return manifest


def read_manifest(bundle: str | Path) -> dict[str, Any]:
    """Read and validate ``BUNDLE/manifest.json`` (``bundle`` may also be the file itself)."""
    path = Path(bundle)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise UserError(
            f"no {MANIFEST_NAME} at {path}; is this a bundle made by simmim-deploy export?"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path} is not valid JSON; re-run simmim-deploy export") from None
    return validate_manifest(manifest, str(path))


def write_manifest(bundle: str | Path, manifest: dict[str, Any]) -> Path:
    """Validate and write ``BUNDLE/manifest.json`` atomically; returns its path."""
    validate_manifest(manifest)
    path = Path(bundle) / MANIFEST_NAME
    atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return path
