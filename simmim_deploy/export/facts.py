"""The model facts a bundle manifest records (and every ONNX file mirrors in metadata_props)."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from simmim_deploy.core.checkpoint_meta import CheckpointMeta
from simmim_deploy.core.manifest import BATCH_DIM, checkpoint_manifest, sha256_file

_MEANINGS = {
    "logits": "class logits; softmax gives probabilities",
    "boxes": "xyxy boxes in network-input pixels; map back with the letterbox scale",
    "scores": "detection scores in [0, 1]; padded rows have score 0",
    "labels": "class index per box; -1 in padded rows",
    "num_detections": "valid rows per image (rows are sorted by score)",
}
_VERSIONED = ("torch", "timm", "onnx", "onnxruntime", "onnxslim", "torch-pruning", "tensorrt")


def output_specs(session: Any, reference: list[Any]) -> list[dict[str, Any]]:
    """Manifest ``outputs``: names/dtypes from the FP32 ONNX session, the fixed (non-batch) dims
    from the PyTorch reference outputs (exporters may leave e.g. the top-K axis symbolic)."""
    specs = []
    for out, ref in zip(session.get_outputs(), reference, strict=True):
        dtype = "int64" if "int64" in out.type else "float32"
        specs.append(
            {
                "name": out.name,
                "shape": [BATCH_DIM, *[int(d) for d in ref.shape[1:]]],
                "dtype": dtype,
                "meaning": _MEANINGS.get(out.name, ""),
            }
        )
    return specs


def versions() -> dict[str, str]:
    """Versions of the tools that made the bundle (installed ones only)."""
    from simmim_deploy.core.environment import package_versions

    found = package_versions(("simmim-deploy", *_VERSIONED))
    return {k.replace("-", "_"): v for k, v in found.items() if v}


def model_facts(
    meta: dict[str, Any], checkpoint: str | Path, batch: tuple[int, int, int]
) -> dict[str, Any]:
    """Manifest fields that depend only on the checkpoint and the batch profile."""
    parsed = CheckpointMeta.from_dict(meta, str(checkpoint))
    return {
        **checkpoint_manifest(parsed, batch).to_dict(),
        "source_checkpoint": {
            "path": str(Path(checkpoint).resolve()),
            "sha256": sha256_file(checkpoint),
        },
        "versions": versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def artefact_entry(path: Path, precision: str, details: dict[str, Any]) -> dict[str, Any]:
    """Manifest ``artefacts[precision]`` for a verified file."""
    return {
        "file": path.name,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "precision": precision,
        "float_ops": list(details.get("float_ops", [])),
        "verified": True,
        **{k: v for k, v in details.items() if k != "float_ops"},
    }


def metadata_for(facts: dict[str, Any], precision: str, float_ops: list[str]) -> dict[str, Any]:
    """What an ONNX file mirrors: the manifest's model facts plus its own precision."""
    keep = {k: v for k, v in facts.items() if k not in ("artefacts", "engines")}
    return {**keep, "precision": precision, "float_ops": list(float_ops)}
