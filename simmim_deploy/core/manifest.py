"""The deployment bundle's ``manifest.json``: the single source of truth for serving.

Written by ``simmim_deploy.export``, read by ``simmim_deploy.serve`` (which never imports torch),
so this module is torch-free (standard library; numpy and Pillow through ``core.preprocess``).

Schema (``format_version`` 2; :class:`Manifest` is its one parser and writer)::

    {
      "format_version": 2,
      "task": "classification" | "detection",
      "model_name": "vit_small_patch16_224",            # timm name
      "class_names": ["cat", "dog", ...],
      "input": {"name": "images", "shape": ["batch", 3, H, W], "dtype": "float32",
                "layout": "NCHW", "channel_order": "RGB"},
      "preprocess": {...},            # core.preprocess.PreprocessSpec.to_dict(): mode
                                      # resize_center_crop (resize, crop, crop_pct) or letterbox
                                      # (size, pad_value), interpolation, scale, mean, std
      "outputs": [{"name": "logits", "shape": ["batch", C], "dtype": "float32",
                   "meaning": "class logits; softmax gives probabilities"}],
      # detection outputs: boxes (batch, K, 4) xyxy in network-input pixels, scores (batch, K),
      # labels (batch, K) int64, num_detections (batch,) int64; padded rows have score 0.
      "artefacts": {"fp32": {"file": "model.onnx", "sha256": "...", "bytes": 0,
                              "precision": "fp32", "float_ops": [], "verified": true,
                              "verified_on": ["onnxruntime", "openvino/f32"]}, ...},
      # verified_on: the runtimes (OpenVINO with its inference precision) whose outputs passed
      # the gate; --backend auto picks only among those pairs.
      "engines": [{"file": "...", "compute_capability": "8.9", "tensorrt_version": "10.13",
                   "precision": "fp16", "batch": [1, 8, 32], "sha256": "..."}],
      "batch": {"min": 1, "opt": 8, "max": 32},
      "data_split": {...} | null,     # core.data_split.DataSplit of the training run
      # and, kept as written: "calibration", "source_checkpoint", "versions", "created",
      # "export", "pruning", ... (whatever export records beside the fields above)
    }

Version 1 bundles (no ``crop_pct``, no ``data_split``) are read as version 2 with
``crop_pct = crop / resize``; other versions are refused with a message saying how to re-export.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from simmim_deploy.core.atomic import atomic_write_text
from simmim_deploy.core.checkpoint_meta import CheckpointMeta
from simmim_deploy.core.data_split import DataSplit
from simmim_deploy.core.errors import UserError
from simmim_deploy.core.preprocess import PreprocessSpec

MANIFEST_NAME = "manifest.json"
INPUT_NAME, BATCH_DIM = "images", "batch"  # the network input and its symbolic batch axis
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
TASKS = ("classification", "detection")
_REQUIRED = ("format_version", "task", "class_names", "input", "preprocess", "outputs", "artefacts")
_REEXPORT = "re-export with simmim-deploy export CHECKPOINT --out BUNDLE"


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A bundle's manifest: typed where serving depends on it, the rest kept as written.

    Attributes:
        task, model_name, class_names: what the model is.
        input: name, shape, dtype, layout and channel order of the network input.
        preprocess: the eval transform the runtime applies.
        outputs: name, shape, dtype and meaning of each network output.
        artefacts: precision (or target) -> file entry (file, sha256, bytes, precision, ...).
        engines: TensorRT engines built for this bundle.
        batch: the batch profile ``{"min", "opt", "max"}``.
        data_split: how training split its data (verify scores the held-out part).
        extra: every other top-level key, unchanged (calibration, versions, pruning, ...).
    """

    task: str
    class_names: tuple[str, ...]
    input: dict[str, Any]
    preprocess: PreprocessSpec
    outputs: list[dict[str, Any]]
    artefacts: dict[str, dict[str, Any]]
    model_name: str | None = None
    engines: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    batch: dict[str, int] = dataclasses.field(default_factory=dict)
    data_split: DataSplit | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "manifest") -> Manifest:
        """Parse and validate; one-line :class:`UserError` naming what to do otherwise."""
        if not isinstance(values, dict):
            raise UserError(f"{where} is not a JSON object; {_REEXPORT}")
        missing = [k for k in _REQUIRED if k not in values]
        if missing:
            raise UserError(f"{where} is missing {', '.join(missing)}; {_REEXPORT}")
        version = values["format_version"]
        if version not in READABLE_VERSIONS:
            raise UserError(
                f"{where} has format_version {version}, this simmim-deploy reads "
                f"{', '.join(map(str, READABLE_VERSIONS))}; {_REEXPORT}"
            )
        if values["task"] not in TASKS:
            raise UserError(f"{where}: unknown task {values['task']!r} (expected one of {TASKS})")
        # Fields parse themselves by this table (plain JSON values otherwise): adding a field to
        # the dataclass is all a new manifest fact needs.
        parsers: dict[str, Any] = {
            "class_names": lambda v: tuple(str(c) for c in v),
            "preprocess": lambda v: PreprocessSpec.from_dict(v, int(version)),
            "data_split": DataSplit.from_dict,
            "engines": lambda v: list(v or []),
            "batch": lambda v: dict(v or {}),
        }
        fields = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: parsers.get(k, copy.deepcopy)(v) for k, v in values.items() if k in fields}
        extra = {k: v for k, v in values.items() if k not in fields and k != "format_version"}
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to ``manifest.json`` (the current ``format_version``)."""
        out: dict[str, Any] = {"format_version": FORMAT_VERSION}
        for field in dataclasses.fields(self):
            if field.name != "extra":
                out[field.name] = _plain(getattr(self, field.name))
        return {**out, **self.extra}


def _plain(value: Any) -> Any:
    """JSON-ready: typed parts through their ``to_dict``, tuples as lists."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, tuple):
        return list(value)
    return copy.deepcopy(value)


def checkpoint_manifest(meta: CheckpointMeta, batch: tuple[int, int, int] = (1, 8, 32)) -> Manifest:
    """The manifest fields a checkpoint alone decides (export adds outputs and artefacts)."""
    size = meta.img_size
    return Manifest(
        task=meta.task,
        class_names=meta.class_names,
        input={
            "name": INPUT_NAME,
            "shape": [BATCH_DIM, 3, size, size],
            "dtype": "float32",
            "layout": "NCHW",
            "channel_order": "RGB",
        },
        preprocess=meta.preprocess(),
        outputs=[],
        artefacts={},
        model_name=meta.model_name,
        batch={"min": batch[0], "opt": batch[1], "max": batch[2]},
        data_split=meta.data_split(),
    )


def is_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` names a checkpoint (a file, or a run folder with ``best.pt``) rather
    than a bundle (a folder with ``manifest.json``, or that file). The one rule the CLI uses."""
    p = Path(path)
    if p.is_file():
        return p.name != MANIFEST_NAME
    return p.is_dir() and not (p / MANIFEST_NAME).exists() and (p / "best.pt").is_file()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def validate_manifest(manifest: dict[str, Any], where: str = "manifest") -> dict[str, Any]:
    """Parse ``manifest`` (:meth:`Manifest.from_dict`); returns it in the current format."""
    return Manifest.from_dict(manifest, where).to_dict()


def load_manifest(bundle: str | Path) -> Manifest:
    """Read and parse ``BUNDLE/manifest.json`` (``bundle`` may also be the file itself)."""
    path = Path(bundle)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise UserError(
            f"no {MANIFEST_NAME} at {path}; is this a bundle made by simmim-deploy export?"
        )
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path} is not valid JSON; {_REEXPORT}") from None
    return Manifest.from_dict(values, str(path))


def read_manifest(bundle: str | Path) -> dict[str, Any]:
    """:func:`load_manifest` as a plain dict in the current format (what serving indexes)."""
    return load_manifest(bundle).to_dict()


def write_manifest(bundle: str | Path, manifest: Manifest | dict[str, Any]) -> Path:
    """Validate and write ``BUNDLE/manifest.json`` atomically; returns its path."""
    if not isinstance(manifest, Manifest):
        manifest = Manifest.from_dict(manifest)
    path = Path(bundle) / MANIFEST_NAME
    atomic_write_text(path, json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n")
    return path
