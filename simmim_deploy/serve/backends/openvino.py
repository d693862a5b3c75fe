"""OpenVINO backend: the bundle's ONNX files compiled for the CPU by OpenVINO.

OpenVINO reads ONNX directly (no conversion step, no IR files in the bundle). The FP32 file runs
at OpenVINO's default inference precision, which is bf16 on CPUs with bf16 instructions (AMX-BF16
or AVX512-BF16) and f32 elsewhere; :meth:`OpenVinoBackend.describe` reports which one was used.
The Q/DQ INT8 file runs as INT8: OpenVINO turns each QuantizeLinear/DequantizeLinear pair into a
FakeQuantize and its low-precision transformations fuse them into integer kernels. The
``PERFORMANCE_HINT`` is ``LATENCY`` by default (one synchronous request, all cores on it), which
beat ``THROUGHPUT`` for one request at batch 1 and 32 in our measurements. ``THROUGHPUT`` splits
the cores into streams (2 streams of 1 thread on 2 cores) and is faster only with that many
requests in flight (``parallel``; offline ``predict`` keeps them busy: 1.22x the LATENCY
model-only speed at batch 32 on a 2-core EPYC, ViT-S INT8); :meth:`run` is thread-safe and
runs up to ``parallel`` calls at once, each on its own infer request.

See https://docs.openvino.ai/ (CPU device: inference precision, performance hints).
"""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

import numpy as np

from simmim_deploy.core.cpu import cpu_info
from simmim_deploy.core.errors import UserError, require

HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")


def _type_name(value: Any) -> str:
    """``f32``/``bf16`` from an ``openvino.Type`` (or its string form)."""
    name = getattr(value, "get_type_name", None)
    return str(name() if callable(name) else value)


def default_inference_precision() -> str:
    """``bf16`` or ``f32``: what OpenVINO's CPU plugin runs FP32 models in on this machine."""
    ov = require("openvino", "openvino", "the OpenVINO backend")
    return _type_name(ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT"))


def runtime_key(inference_precision: str) -> str:
    """The ``verified_on`` entry the export gate writes for OpenVINO (``openvino/f32``)."""
    return f"openvino/{inference_precision}"


class OpenVinoBackend:
    """Run an ``.onnx`` file with OpenVINO on the CPU.

    Args:
        path: the ONNX file (FP32, FP16 or Q/DQ INT8).
        threads: ``INFERENCE_NUM_THREADS`` (None: OpenVINO's default, all cores).
        precision: the artefact's precision, recorded in :meth:`describe` (from the manifest).
        hint: ``PERFORMANCE_HINT``, one of :data:`HINTS`.
        inference_precision: force ``f32`` or ``bf16`` (None: OpenVINO's default for this CPU).
    """

    def __init__(
        self,
        path: str | Path,
        threads: int | None = None,
        precision: str = "fp32",
        hint: str = "LATENCY",
        inference_precision: str | None = None,
    ) -> None:
        ov = require("openvino", "openvino", "the OpenVINO backend")
        if hint not in HINTS:
            raise UserError(f"unknown OpenVINO performance hint {hint!r}: use one of {HINTS}")
        self.path = Path(path)
        self.precision = precision
        self.hint = hint
        self.threads = threads
        self.notes: list[str] = []
        core = ov.Core()
        config: dict[str, Any] = {"PERFORMANCE_HINT": hint}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if inference_precision:
            config["INFERENCE_PRECISION_HINT"] = inference_precision
        try:
            model = core.read_model(str(self.path))
            self.compiled = core.compile_model(model, "CPU", config)
        except RuntimeError as exc:  # OpenVINO reports unsupported graphs as RuntimeError
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"OpenVINO cannot compile {self.path.name}: {first}") from None
        # One infer request per stream: concurrent callers each take a free one (or wait).
        self.parallel = max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(self.parallel):
            self._free.put(self.compiled.create_infer_request())
        self.capabilities = [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
        self.inference_precision = _type_name(
            self.compiled.get_property("INFERENCE_PRECISION_HINT")
        )
        self.version = ov.get_version()
        shape = self.compiled.inputs[0].get_partial_shape()
        dims = [d.get_length() if d.is_static else None for d in shape]
        self._input_shape = (dims[0], int(dims[1]), int(dims[2]), int(dims[3]))
        self.output_names = [out.get_any_name() for out in self.compiled.outputs]

    @property
    def input_shape(self) -> tuple[int | None, int, int, int]:
        """``(batch or None, 3, H, W)`` as stored in the ONNX file."""
        return self._input_shape

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run ``(B, 3, H, W)`` float32; returns all outputs by name (copies, safe to keep)."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        request = self._free.get()
        try:
            request.infer({0: x})
            outs = [request.get_output_tensor(i).data.copy() for i in range(len(self.output_names))]
        finally:
            self._free.put(request)
        return dict(zip(self.output_names, outs, strict=True))

    def describe(self) -> dict[str, Any]:
        """Library, version, file, artefact precision and the precision OpenVINO really used."""
        cpu = cpu_info()
        return {
            "backend": "openvino",
            "version": self.version,
            "file": self.path.name,
            "precision": self.precision,
            "inference_precision": self.inference_precision,
            "performance_hint": self.hint,
            "parallel_requests": self.parallel,
            "device": "cpu",
            "cpu": cpu.model,
            "isa": cpu.isa_line(),
            "optimization_capabilities": self.capabilities,
            "inference_threads": self.threads or "default",
            "notes": list(self.notes),
        }
