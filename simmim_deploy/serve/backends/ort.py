"""ONNX Runtime backend: TensorRT EP > CUDA EP > CPU, and a report of what was really used."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from simmim_deploy.core.errors import UserError

log = logging.getLogger(__name__)

PROVIDER_PRIORITY = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)
# Named choices for --backend: which providers to ask for, in order.
PROVIDER_SETS = {
    "ort": PROVIDER_PRIORITY,
    "ort-trt": PROVIDER_PRIORITY,
    "ort-cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "ort-cpu": ("CPUExecutionProvider",),
}


def _trt_cache_dir() -> str:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(root) / "simmim-deploy" / "ort-trt"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


class OrtBackend:
    """Run an ``.onnx`` file with ONNX Runtime.

    Args:
        path: the ONNX file.
        providers: a key of :data:`PROVIDER_SETS` (``"ort"`` = best available).
        threads: intra-op threads (None: ONNX Runtime's default, one per physical core).
        precision: recorded in :meth:`describe` (from the manifest).
    """

    def __init__(
        self,
        path: str | Path,
        providers: str = "ort",
        threads: int | None = None,
        precision: str = "fp32",
    ) -> None:
        import onnxruntime as ort

        if providers not in PROVIDER_SETS:
            raise UserError(f"unknown ONNX Runtime choice {providers!r}: {sorted(PROVIDER_SETS)}")
        self.path = Path(path)
        self.precision = precision
        self.notes: list[str] = []
        available = ort.get_available_providers()
        self.requested = [p for p in PROVIDER_SETS[providers] if p in available]
        first = PROVIDER_SETS[providers][0]
        if providers != "ort" and first not in available:  # asked for explicitly: no fallback
            raise UserError(
                f"--backend {providers} needs {first}, but this ONNX Runtime offers {available}: "
                "pip install 'simmim-deploy[gpu]' (onnxruntime-gpu) or use --backend ort"
            )
        if not self.requested:
            raise UserError(
                f"ONNX Runtime here offers {available}, none of {list(PROVIDER_SETS[providers])};"
                " install onnxruntime-gpu (pip install 'simmim-deploy[gpu]') or use --backend ort"
            )
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.threads = threads
        self.session = ort.InferenceSession(
            str(self.path), sess_options=opts, providers=self._with_options(self.requested)
        )
        self.used = self.session.get_providers()
        if self.used[0] != self.requested[0]:
            log.warning("ONNX Runtime fell back from %s to %s", self.requested[0], self.used[0])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        dims = [d if isinstance(d, int) else None for d in inp.shape]
        self._input_shape = (dims[0], int(dims[1]), int(dims[2]), int(dims[3]))
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.version = ort.__version__

    @staticmethod
    def _with_options(providers: list[str]) -> list[Any]:
        out: list[Any] = []
        for p in providers:
            if p == "TensorrtExecutionProvider":
                # Engine building takes minutes; cache it so only the first start pays.
                cache = {"trt_engine_cache_enable": True, "trt_engine_cache_path": _trt_cache_dir()}
                out.append((p, cache))
            else:
                out.append(p)
        return out

    @property
    def input_shape(self) -> tuple[int | None, int, int, int]:
        """``(batch or None, 3, H, W)`` as stored in the ONNX file."""
        return self._input_shape

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run ``(B, 3, H, W)`` float32; returns all outputs by name."""
        outs = self.session.run(None, {self.input_name: np.ascontiguousarray(batch)})
        return dict(zip(self.output_names, outs, strict=True))

    def describe(self) -> dict[str, Any]:
        """Library, version, file, precision, providers asked for and actually used."""
        return {
            "backend": "onnxruntime",
            "version": self.version,
            "file": self.path.name,
            "precision": self.precision,
            "providers_requested": self.requested,
            "providers_used": self.used,
            "device": "cpu" if self.used[0] == "CPUExecutionProvider" else "cuda",
            "intra_op_threads": self.threads or "default",
            "notes": list(self.notes),
        }
