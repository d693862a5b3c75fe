"""What a user would run instead of our artefacts on a CPU, as runners for bench_export.py.

PyTorch eager FP32 and bf16 autocast (``torch.autocast("cpu", torch.bfloat16)``), OpenVINO's
default on the FP32 ONNX file (bf16 inference where the CPU has bf16 instructions), and OpenVINO
with NNCF post-training INT8 (``nncf.quantize(..., model_type=nncf.ModelType.TRANSFORMER)``, the
preset NNCF documents for transformers), calibrated on the same real images as our INT8 file.
OpenVINO runs with ``PERFORMANCE_HINT: LATENCY`` (one synchronous request), like our backend.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from simmim_deploy.serve.backends.openvino import OpenVinoBackend

Runner = Callable[[np.ndarray], list[np.ndarray]]


def bf16_autocast(model: torch.nn.Module) -> Runner:
    """PyTorch eager under bf16 autocast (outputs cast back to float32 / kept integer)."""
    model.eval()

    @torch.inference_mode()
    def run(x: np.ndarray) -> list[np.ndarray]:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(torch.from_numpy(x))
        outs = out if isinstance(out, tuple | list) else (out,)
        return [o.float().numpy() if o.is_floating_point() else o.numpy() for o in outs]

    return run


def openvino(path: Path, threads: int) -> tuple[Runner, str]:
    """OpenVINO on an ONNX (or IR) file; also returns the inference precision it used."""
    backend = OpenVinoBackend(path, threads)
    return (lambda x: list(backend.run(x).values())), backend.inference_precision


def nncf_int8(onnx_path: Path, calib: np.ndarray, out: Path, threads: int) -> tuple[Runner, str]:
    """NNCF INT8 (transformer preset) of the FP32 ONNX file, saved as IR and run on OpenVINO.

    Returns:
        The runner and a note (calibration size, seconds).
    """
    import time

    import nncf
    import openvino as ov

    logging.getLogger("nncf").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    model = ov.Core().read_model(str(onnx_path))
    name = model.inputs[0].get_any_name()
    data = nncf.Dataset([calib[i : i + 1] for i in range(len(calib))], lambda x: {name: x})
    quantized = nncf.quantize(
        model, data, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calib)
    )
    xml = out / "nncf_int8.xml"
    ov.save_model(quantized, str(xml))
    seconds = time.perf_counter() - t0
    runner, _ = openvino(xml, threads)
    note = f"nncf {nncf.__version__}, {len(calib)} calibration images, {seconds:.0f} s"
    return runner, note
