"""FP32 ONNX -> reduced-precision ONNX: one small converter per precision, in a lookup table.

Each converter takes the FP32 file, the destination and the calibration context and returns the
artefact's manifest facts (``float_ops`` and converter-specific details).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class ConvertContext:
    """What a converter may need beyond the FP32 file.

    Attributes:
        calib_images: float32 ``(N, 3, S, S)`` real images (static INT8), or None.
        calib_method: ``minmax`` | ``entropy`` | ``percentile``.
        int8_scope: ``linear`` | ``all``.
        on_calib_batch: calibration progress, ``(batches fed, total batches)``.
    """

    calib_images: np.ndarray | None = None
    calib_method: str = "minmax"
    int8_scope: str = "linear"
    on_calib_batch: Callable[[int, int], None] | None = None


def _fp16(src: Path, dst: Path, ctx: ConvertContext) -> dict[str, Any]:
    from simmim_deploy.export.fp16 import convert_fp16

    return {"float_ops": convert_fp16(src, dst), "fp32_ops_policy": "LayerNorm/Softmax/reductions"}


def _int8_static(
    src: Path, dst: Path, ctx: ConvertContext, reduce_range: bool = False
) -> dict[str, Any]:
    from simmim_deploy.export.quantize import quantize_static_int8

    assert ctx.calib_images is not None, "static INT8 needs calibration images"
    info = quantize_static_int8(
        src, dst, ctx.calib_images, ctx.calib_method, ctx.int8_scope,
        on_batch=ctx.on_calib_batch, reduce_range=reduce_range,
    )  # fmt: skip
    return {
        "float_ops": info.float_ops,
        "quantization": {
            "mode": "static_qdq",
            "scope": ctx.int8_scope,
            "method": ctx.calib_method,
            "per_channel": True,
            "activations": "int8 symmetric",
            "weights": "7-bit range (reduce_range)" if reduce_range else "int8 symmetric",
            "quantized_ops": info.quantized_ops,
            "num_quantized_nodes": info.num_quantized_nodes,
            "warnings": info.warnings,
        },
    }


def _int8_w7(src: Path, dst: Path, ctx: ConvertContext) -> dict[str, Any]:
    """Static Q/DQ INT8 with 7-bit weights: for OpenVINO on CPUs without VNNI, whose 8-bit dot
    products saturate with full-range weights (OpenVINO's "saturation issue")."""
    return _int8_static(src, dst, ctx, reduce_range=True)


def _int8_dynamic(src: Path, dst: Path, ctx: ConvertContext) -> dict[str, Any]:
    from simmim_deploy.export.quantize import quantize_dynamic_int8

    info = quantize_dynamic_int8(src, dst)
    return {
        "float_ops": info.float_ops,
        "quantization": {
            "mode": "dynamic",
            "quantized_ops": info.quantized_ops,
            "num_quantized_nodes": info.num_quantized_nodes,
            "note": "ONNX Runtime CPU only (MatMulInteger); not for TensorRT",
        },
    }


def _int8_nncf(src: Path, dst: Path, ctx: ConvertContext) -> dict[str, Any]:
    """OpenVINO IR quantized by NNCF (every MatMul, attention products included)."""
    from simmim_deploy.core.manifest import sha256_file
    from simmim_deploy.export.nncf_int8 import quantize_nncf_int8, weights_path

    assert ctx.calib_images is not None, "NNCF INT8 needs calibration images"
    info = quantize_nncf_int8(src, dst, ctx.calib_images)
    return {
        "float_ops": ["Softmax", "LayerNormalization", "Gelu"],
        "weights_file": info.weights_file,
        "weights_sha256": sha256_file(weights_path(dst)),
        "runtime": "openvino",
        "quantization": {
            "mode": "nncf_ptq",
            "preset": "transformer",
            "scope": "every MatMul (attention products included)",
            "weights": "7-bit range in every layer (overflow_fix enable)",
            "calibration_images": info.calibration_images,
            "nncf": info.nncf_version,
        },
    }


CONVERTERS: dict[str, Callable[[Path, Path, ConvertContext], dict[str, Any]]] = {
    "fp16": _fp16,
    "int8": _int8_static,
    "int8-dynamic": _int8_dynamic,
    "int8-w7": _int8_w7,
    "int8-nncf": _int8_nncf,
}

FILENAMES: dict[str, str] = {
    "fp32": "model.onnx",
    "fp16": "model.fp16.onnx",
    "int8": "model.int8.onnx",
    "int8-dynamic": "model.int8-dynamic.onnx",
    "int8-w7": "model.int8-w7.onnx",
    "int8-nncf": "model.int8-nncf.xml",  # OpenVINO IR (+ model.int8-nncf.bin)
}
# Artefacts only OpenVINO runs (IR files): gated on OpenVINO, never offered to ONNX Runtime.
OPENVINO_ONLY = frozenset({"int8-nncf"})
