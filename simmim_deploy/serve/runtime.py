"""A bundle ready to run: manifest + backend + the matching pre- and post-processing.

:class:`Runtime` is what ``predict``, the HTTP server and the benchmark share, so the three can
never disagree on how an image becomes a result.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from simmim_deploy.core.boxes import Letterbox
from simmim_deploy.core.manifest import read_manifest, validate_manifest
from simmim_deploy.serve.backends import Backend, open_backend, run_any_batch
from simmim_deploy.serve.images import DEFAULT_MAX_PIXELS, FAST_DECODE, decode_image
from simmim_deploy.serve.postprocess import detections, topk
from simmim_deploy.serve.preprocess import PreprocessSpec, preprocess


@dataclass(frozen=True)
class Prepared:
    """One decoded, preprocessed image: ``array`` is ``(3, H, W)`` float32."""

    array: np.ndarray
    width: int
    height: int
    letterbox: Letterbox | None


def decode_min_side(spec: PreprocessSpec, fast_decode: bool) -> int:
    """The smallest side a JPEG may be decoded at (0: in full): the resize target of a
    classifier with ``fast_decode``; a detector always decodes in full."""
    return spec.resize if fast_decode and spec.mode == "resize_center_crop" else 0


def prepare_image(
    source: str | PathLike[str] | bytes,
    spec: PreprocessSpec,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    fast_decode: bool = FAST_DECODE,
) -> Prepared:
    """Decode a path or encoded bytes and preprocess it per ``spec`` (raises ``ImageError``).

    The one decode + preprocess step of every engine (local threads, Ray tasks, the server).
    ``fast_decode``: a classifier's JPEG may be decoded at reduced size, never below the
    resize target (``spec.resize``); detection always decodes in full (its boxes are mapped
    back through the letterbox of the decoded image).
    """
    decoded = decode_image(source, max_pixels, decode_min_side(spec, fast_decode), keep_grey=True)
    array, lb = preprocess(decoded.image, spec)
    return Prepared(array, decoded.width, decoded.height, lb)


class Runtime:
    """Run a bundle: decode -> preprocess -> backend -> post-process.

    Args:
        bundle: bundle directory (with ``manifest.json``).
        backend: a name/file for :func:`open_backend`, or an object implementing ``Backend``
            (e.g. the PyTorch runner from ``simmim_deploy.models.torch_backend``).
        precision: artefact key (``fp32``, ``int8``...), None for the default.
        threads: ONNX Runtime intra-op threads.
        max_pixels: refuse larger images (decompression bombs).
        manifest: use this manifest instead of reading ``bundle/manifest.json``.
        fast_decode: reduced-size JPEG decoding for classifiers (see :func:`prepare_image`).
        throughput: the caller keeps ``backend.parallel`` batches in flight (offline
            ``predict``'s pipeline); see :func:`open_backend`.
    """

    def __init__(
        self,
        bundle: str | PathLike[str],
        backend: str | Backend = "auto",
        precision: str | None = None,
        threads: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        manifest: dict[str, Any] | None = None,
        fast_decode: bool = FAST_DECODE,
        throughput: bool = False,
    ) -> None:
        self.bundle = Path(bundle)
        self.fast_decode = fast_decode
        self.manifest = validate_manifest(manifest) if manifest else read_manifest(self.bundle)
        self.spec = PreprocessSpec.from_manifest(self.manifest)
        self.task: str = self.manifest["task"]
        self.class_names: list[str] = list(self.manifest["class_names"])
        self.max_pixels = max_pixels
        if isinstance(backend, str):
            backend = open_backend(
                self.bundle, self.manifest, backend, precision, threads, throughput
            )
        self.backend: Backend = backend
        outputs = self.manifest.get("outputs") or []
        self.logits_name = outputs[0]["name"] if outputs else None

    def prepare(self, source: str | PathLike[str] | bytes) -> Prepared:
        """Decode a path or encoded bytes and preprocess it (raises ``ImageError``)."""
        return prepare_image(source, self.spec, self.max_pixels, self.fast_decode)

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run ``(B, 3, H, W)`` float32 of any ``B`` through the backend."""
        return run_any_batch(self.backend, batch)

    def postprocess(
        self,
        outputs: dict[str, np.ndarray],
        prepared: list[Prepared],
        top_k: int = 5,
        conf: float = 0.25,
    ) -> list[dict[str, Any]]:
        """Per image ``{"topk": [...]}`` (classification) or ``{"boxes": [...]}`` (detection)."""
        if self.task == "detection":
            lbs = [p.letterbox for p in prepared]
            if any(lb is None for lb in lbs):  # resize_center_crop detector: identity map
                lbs = [
                    Letterbox(1.0, (0, 0), (p.width, p.height), (p.width, p.height))
                    for p in prepared
                ]
            boxes = detections(outputs, lbs, conf, self.class_names)  # type: ignore[arg-type]
            return [{"boxes": b} for b in boxes]
        logits = outputs.get(self.logits_name) if self.logits_name else None
        if logits is None:
            logits = next(iter(outputs.values()))
        return [{"topk": t} for t in topk(logits, top_k, self.class_names)]

    def predict_prepared(
        self, prepared: list[Prepared], top_k: int = 5, conf: float = 0.25
    ) -> list[dict[str, Any]]:
        """Batch, infer and post-process already prepared images (``width``/``height`` added)."""
        outputs = self.infer(np.stack([p.array for p in prepared]))
        posts = self.postprocess(outputs, prepared, top_k, conf)
        return [
            {"width": p.width, "height": p.height, **post}
            for p, post in zip(prepared, posts, strict=True)
        ]

    def describe(self) -> dict[str, Any]:
        """Task, model, input size and the backend's own report."""
        return {
            "task": self.task,
            "model_name": self.manifest.get("model_name"),
            "input_hw": list(self.spec.input_hw),
            "num_classes": len(self.class_names),
            "decode": "fast" if decode_min_side(self.spec, self.fast_decode) else "full",
            **{"backend": self.backend.describe()},
        }
