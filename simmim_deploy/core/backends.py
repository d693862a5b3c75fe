"""The names ``--backend`` accepts, declared once for the runtime, the CLI help and the docs.

Standard library only, so the CLI can show them in ``--help`` without importing the runtime.
"""

from __future__ import annotations

BACKENDS = {
    "auto": "TensorRT engine for this GPU if present, else ONNX Runtime on a GPU provider, else "
    "the fastest verified CPU backend and artefact (measured once per machine, cached)",
    "ort": "ONNX Runtime, providers in priority TensorRT EP > CUDA EP > CPU",
    "ort-trt": "ONNX Runtime, same as ort (TensorRT EP first)",
    "ort-cuda": "ONNX Runtime, CUDA EP then CPU",
    "ort-cpu": "ONNX Runtime, CPU only",
    "openvino": "OpenVINO on the CPU, the bundle's ONNX files (needs the openvino extra)",
    "trt": "native TensorRT engine from the bundle's engines (needs the tensorrt extra)",
}
# Backends that run the bundle's ONNX files (one runtime per ONNX artefact when benchmarking).
ONNX_BACKENDS = ("ort", "ort-trt", "ort-cuda", "ort-cpu", "openvino")


def backend_help(extra: str = "") -> str:
    """``auto, ort, ..., trt`` plus ``extra`` (e.g. ``torch, or a model file``), for ``--help``."""
    return ", ".join(BACKENDS) + (f", {extra}" if extra else "") + "."
