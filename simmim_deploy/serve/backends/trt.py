"""Native TensorRT engine runner (TensorRT 10/11 tensor API, CUDA memory through cuda-python).

An engine is tied to its GPU and TensorRT version; the manifest records both, and loading an
engine built elsewhere is refused with the command that rebuilds it. No torch: device memory,
copies and the stream come from ``cuda.bindings`` (cuda-python).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from simmim_deploy.core.errors import MissingExtraError, UserError

REBUILD = "simmim-deploy build BUNDLE"


def load_tensorrt() -> Any:
    """Import the real TensorRT library (``tensorrt-stubs`` alone is an empty namespace)."""
    from simmim_deploy.core.environment import real_tensorrt

    trt = real_tensorrt()
    if trt is None:
        raise MissingExtraError("tensorrt", "tensorrt", "running TensorRT engines")
    return trt


def load_cudart() -> Any:
    """``cuda.bindings.runtime`` (cuda-python >= 12.8) or the older ``cuda.cudart``."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[no-redef]
        except ImportError:
            raise MissingExtraError("cuda-python", "tensorrt", "TensorRT device memory") from None
    return cudart


def _ok(cudart: Any, result: Any) -> Any:
    """Unpack a cuda-python ``(err, *values)`` tuple, raising on error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        name = cudart.cudaGetErrorName(err)[1]
        raise RuntimeError(f"CUDA error: {name.decode() if isinstance(name, bytes) else name}")
    return values[0] if len(values) == 1 else values


def device_facts(device: int = 0) -> dict[str, str]:
    """Compute capability and TensorRT version of this machine, as the manifest spells them."""
    trt = load_tensorrt()
    cudart = load_cudart()
    props = _ok(cudart, cudart.cudaGetDeviceProperties(device))
    version = ".".join(trt.__version__.split(".")[:2])
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return {
        "compute_capability": f"{props.major}.{props.minor}",
        "tensorrt_version": version,
        "gpu": name.strip("\x00"),
    }


def pick_engine(manifest: dict[str, Any], precision: str | None, device: int = 0) -> dict:
    """The manifest's engine entry built for this GPU and TensorRT version.

    Raises:
        UserError: no engine in the bundle, or none for this GPU/TensorRT (names the rebuild).
    """
    engines = manifest.get("engines") or []
    if not engines:
        raise UserError(f"the bundle has no TensorRT engine; build one with: {REBUILD}")
    facts = device_facts(device)
    same = [
        e
        for e in engines
        if str(e.get("compute_capability")) == facts["compute_capability"]
        and str(e.get("tensorrt_version", "")).split(".")[:2]
        == facts["tensorrt_version"].split(".")
    ]
    if precision:
        same = [e for e in same if e.get("precision") == precision]
    if not same:
        built = ", ".join(
            f"{e.get('file')} (sm {e.get('compute_capability')}, TensorRT "
            f"{e.get('tensorrt_version')}, {e.get('precision')})"
            for e in engines
        )
        raise UserError(
            f"no engine for this GPU (sm {facts['compute_capability']}, TensorRT "
            f"{facts['tensorrt_version']}{', ' + precision if precision else ''}); the bundle has "
            f"{built}; rebuild here with: {REBUILD}"
        )
    return same[0]


class TrtBackend:
    """Run a serialized TensorRT engine (raw file, no header) on one GPU.

    Buffers for the profile's largest batch are allocated once; every call sets the real input
    shape, so a partial last batch runs without rebuilding anything.
    """

    def __init__(self, path: str | Path, precision: str = "", device: int = 0) -> None:
        trt = load_tensorrt()
        self._cudart = cudart = load_cudart()
        _ok(cudart, cudart.cudaSetDevice(device))
        self.path, self.precision, self.device = Path(path), precision, device
        self._trt_version = trt.__version__
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise UserError(
                f"TensorRT could not load {self.path.name} (other GPU or TensorRT version?); "
                f"rebuild it with: {REBUILD}"
            )
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = [self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names]
        self.input_name = names[is_input.index(True)]
        self.output_names = [n for n, inp in zip(names, is_input, strict=True) if not inp]
        self._dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        shape = tuple(self.engine.get_tensor_shape(self.input_name))
        if shape[0] == -1:
            lo, _, hi = self.engine.get_tensor_profile_shape(self.input_name, 0)
            self.min_batch, self.max_batch = int(lo[0]), int(hi[0])
            self._input_shape: tuple[int | None, int, int, int] = (None, *map(int, shape[1:]))
        else:
            self.min_batch = self.max_batch = int(shape[0])
            self._input_shape = tuple(int(s) for s in shape)  # type: ignore[assignment]
        self.context = self.engine.create_execution_context()
        self._stream = _ok(cudart, cudart.cudaStreamCreate())
        self._buffers = self._allocate()
        self._lock = threading.Lock()

    def _allocate(self) -> dict[str, int]:
        """Device buffers sized for the largest batch, reused by every call."""
        full = (self.max_batch, *self._input_shape[1:])
        self.context.set_input_shape(self.input_name, full)
        buffers = {}
        for name in (self.input_name, *self.output_names):
            dims = tuple(self.context.get_tensor_shape(name))
            nbytes = int(np.prod(dims)) * self._dtypes[name].itemsize
            buffers[name] = int(_ok(self._cudart, self._cudart.cudaMalloc(max(nbytes, 1))))
            self.context.set_tensor_address(name, buffers[name])
        return buffers

    @property
    def input_shape(self) -> tuple[int | None, int, int, int]:
        """``(None or fixed batch, 3, H, W)``; see ``max_batch`` for the profile limit."""
        return self._input_shape

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run ``(B, 3, H, W)`` with ``min_batch <= B <= max_batch``; outputs by name."""
        cudart, kind = self._cudart, self._cudart.cudaMemcpyKind
        real = batch.shape[0]
        if real < self.min_batch:  # a profile with min > 1: pad, then drop the padding rows
            batch = np.concatenate([batch, np.repeat(batch[-1:], self.min_batch - real, 0)])
        x = np.ascontiguousarray(batch, dtype=self._dtypes[self.input_name])
        with self._lock:
            self.context.set_input_shape(self.input_name, x.shape)
            copy = cudart.cudaMemcpyAsync(
                self._buffers[self.input_name], x.ctypes.data, x.nbytes,
                kind.cudaMemcpyHostToDevice, self._stream,
            )  # fmt: skip
            _ok(cudart, copy)
            if not self.context.execute_async_v3(int(self._stream)):
                raise RuntimeError(f"TensorRT execution failed for {self.path.name}")
            outputs = {}
            for name in self.output_names:
                host = np.empty(tuple(self.context.get_tensor_shape(name)), self._dtypes[name])
                copy = cudart.cudaMemcpyAsync(
                    host.ctypes.data, self._buffers[name], host.nbytes,
                    kind.cudaMemcpyDeviceToHost, self._stream,
                )  # fmt: skip
                _ok(cudart, copy)
                outputs[name] = host[:real]
            _ok(cudart, cudart.cudaStreamSynchronize(self._stream))
        return outputs

    def describe(self) -> dict[str, Any]:
        """Library, version, engine file, precision, batch profile and GPU."""
        return {
            "backend": "tensorrt",
            "version": self._trt_version,
            "file": self.path.name,
            "precision": self.precision,
            "batch_profile": [self.min_batch, self.max_batch],
            "device": f"cuda:{self.device}",
        }

    def close(self) -> None:
        """Free device memory and the stream."""
        for ptr in self._buffers.values():
            self._cudart.cudaFree(ptr)
        self._buffers = {}
        self._cudart.cudaStreamDestroy(self._stream)
