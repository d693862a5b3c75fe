"""The verification gate on OpenVINO too, so ``--backend auto`` only picks pairs that passed it.

The gate proper runs every artefact on ONNX Runtime. OpenVINO reads the same ONNX files but does
not compute the same numbers: on CPUs with bf16 instructions it infers FP32 files in bf16, and
its INT8 kernels differ from ONNX Runtime's: on CPUs without VNNI (SSE/AVX2/AVX-512 8-bit
dot products) the intermediate sums can saturate, which costs accuracy (OpenVINO's "Saturation
(overflow) Issue Workaround", https://docs.openvino.ai/latest/pot_saturation_issue.html; measured
here: the same Q/DQ file gave OpenVINO a logit cosine of 0.968 where ONNX Runtime had 0.9999, on a
Xeon with AVX-512 and no VNNI). So each artefact
is also run on OpenVINO, against the same PyTorch reference and budget (an FP32 file that
OpenVINO runs in bf16 gets the FP16 budget: a reduced-precision run). The result is recorded in
the artefact's ``verified_on`` as ``openvino/<inference precision>``; a miss is recorded, not
fatal: ONNX Runtime still serves that file.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np

from simmim_deploy.export.config import Thresholds
from simmim_deploy.export.verify import Runner, VerificationSet, run_batched, verify_outputs

log = logging.getLogger(__name__)


def openvino_budget(
    precision: str, inference: str, thresholds: Thresholds, reduced: Thresholds
) -> Thresholds:
    """The budget of an artefact run on OpenVINO: an FP32 file inferred in bf16 gets ``reduced``
    (the FP16 budget: a reduced-precision run), every other file its own ``thresholds``."""
    return reduced if inference == "bf16" and precision == "fp32" else thresholds


def openvino_runner(path: str | Path) -> tuple[Runner, str]:
    """``(runner, inference precision)`` for an ONNX or IR file on OpenVINO's CPU defaults."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    precision = compiled.get_property("INFERENCE_PRECISION_HINT")
    name = getattr(precision, "get_type_name", lambda: str(precision))()

    def run(x: np.ndarray) -> list[np.ndarray]:
        request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return [request.get_output_tensor(i).data.copy() for i in range(len(compiled.outputs))]

    return run, str(name)


def verify_on_openvino(
    precision: str,
    path: Path,
    reference: list[np.ndarray],
    vset: VerificationSet,
    task: str,
    thresholds: Thresholds,
    reduced: Thresholds,
) -> dict[str, Any] | None:
    """Run the gate for ``path`` on OpenVINO; None when the ``openvino`` extra is absent.

    Args:
        reduced: the budget used instead of ``thresholds`` when OpenVINO infers in bf16.

    Returns:
        The parity entry (as :func:`verify_outputs`) plus ``runtime``: ``openvino/f32`` or
        ``openvino/bf16``.
    """
    if importlib.util.find_spec("openvino") is None:
        return None
    try:
        runner, inference = openvino_runner(path)
    except RuntimeError as exc:  # a graph OpenVINO cannot compile: recorded as not verified
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return {"precision": precision, "file": path.name, "runtime": "openvino",
                "passed": False, "failures": [f"OpenVINO cannot compile it: {first}"]}  # fmt: skip
    budget = openvino_budget(precision, inference, thresholds, reduced)
    outputs = run_batched(runner, vset.x)
    entry = verify_outputs(
        precision, path.name, reference, outputs, task, budget, vset.labels, vset.truth
    )
    entry["runtime"] = f"openvino/{inference}"
    if not entry["passed"]:
        log.warning(
            "%s on OpenVINO (%s) missed the gate (%s): --backend auto will not pick it there",
            path.name,
            inference,
            entry["failures"][0],
        )
    return entry
