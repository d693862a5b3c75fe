"""FP32 ONNX -> OpenVINO IR quantized to INT8 by NNCF: the bundle's OpenVINO-only INT8 artefact.

NNCF's post-training quantization with the transformer preset
(``nncf.quantize(..., model_type=nncf.ModelType.TRANSFORMER)``, SmoothQuant and bias correction)
quantizes every MatMul, the attention score and context products included, which our Q/DQ files
keep in float; OpenVINO runs the result with its own INT8 kernels. On CPUs without VNNI or AMX
those kernels multiply 8-bit pairs into 16-bit sums that can saturate (NNCF's "overflow fix"),
so weights get 7 bits in every layer (``OverflowFix.ENABLE``), not only the first
(NNCF's default), which NNCF documents for such CPUs. The file is an IR (``.xml`` + ``.bin``):
ONNX Runtime cannot run it, so the export gate runs it on OpenVINO only.

See https://docs.openvino.ai/ (NNCF post-training quantization, "Saturation issue").
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from simmim_deploy.core.errors import require

IR_SUFFIX = ".xml"


@dataclasses.dataclass(frozen=True)
class NncfInfo:
    """What the quantization did, for the manifest."""

    nncf_version: str
    calibration_images: int
    overflow_fix: str
    weights_file: str


def weights_path(xml: str | Path) -> Path:
    """The ``.bin`` beside an IR ``.xml`` (OpenVINO's naming)."""
    return Path(xml).with_suffix(".bin")


def quantize_nncf_int8(
    src: str | Path, dst: str | Path, calib_images: np.ndarray, overflow_fix: str = "enable"
) -> NncfInfo:
    """NNCF INT8 of ``src`` (transformer preset), written as IR ``dst`` (+ ``.bin``) atomically.

    Args:
        src: FP32 ONNX file.
        dst: the ``.xml`` to write; its ``.bin`` goes beside it.
        calib_images: float32 ``(N, 3, S, S)`` eval-preprocessed real images.
        overflow_fix: ``enable`` (7-bit weights everywhere), ``first_layer_only`` or ``disable``.
    """
    # NNCF imports its torch backend when torch is installed, and torch's C++-extension module
    # then warns "No CUDA runtime is found" on every CPU machine: nothing is built here.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    nncf = require("nncf", "openvino", "NNCF INT8 (--precision int8-nncf)")
    ov = require("openvino", "openvino", "NNCF INT8 (--precision int8-nncf)")
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    logging.getLogger("nncf").setLevel(logging.WARNING)
    dst = Path(dst)
    model = ov.Core().read_model(str(src))
    name = model.inputs[0].get_any_name()
    data = nncf.Dataset([calib_images[i : i + 1] for i in range(len(calib_images))],
                        lambda x: {name: x})  # fmt: skip
    quantized = nncf.quantize(
        model,
        data,
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(calib_images),
        advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix(overflow_fix)),
    )
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".nncf-") as tmp:
        staged = Path(tmp) / dst.name
        ov.save_model(quantized, str(staged))  # weights compressed to FP16 where not INT8
        os.replace(weights_path(staged), weights_path(dst))  # the .bin first: the .xml names it
        os.replace(staged, dst)
    return NncfInfo(nncf.__version__, len(calib_images), overflow_fix, weights_path(dst).name)
