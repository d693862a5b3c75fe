"""What this machine has: versions, accelerators and providers, for bug reports and manifests.

Only importlib probing here: a package that is missing or broken is reported, never fatal.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
from typing import Any

from simmim_deploy.core.cpu import cpu_info

PACKAGES = (
    "simmim-deploy",
    "torch",
    "torchvision",
    "timm",
    "numpy",
    "onnx",
    "onnxslim",
    "onnxruntime",
    "onnxruntime-gpu",
    "openvino",
    "nncf",
    "tensorrt",
    "torch-pruning",
    "faster-coco-eval",
    "fastapi",
    "uvicorn",
)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed distribution versions (``None`` where not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def real_tensorrt() -> Any | None:
    """The TensorRT module if the real library is importable, else ``None``.

    ``tensorrt-stubs`` installs a ``tensorrt/`` folder of ``.pyi`` files only, which Python imports
    as an empty namespace package; the real library has ``Builder`` and ``Runtime``.
    """
    try:
        trt = importlib.import_module("tensorrt")
    except Exception:  # noqa: BLE001 - a broken install is the same as none here
        return None
    return trt if hasattr(trt, "Runtime") and hasattr(trt, "Builder") else None


def onnxruntime_info() -> dict[str, Any]:
    """ONNX Runtime version and execution providers available on this machine."""
    try:
        ort = importlib.import_module("onnxruntime")
    except Exception as exc:  # noqa: BLE001
        return {"installed": False, "error": str(exc).splitlines()[0]}
    return {
        "installed": True,
        "version": ort.__version__,
        "providers": list(ort.get_available_providers()),
        "device": ort.get_device(),
    }


def torch_info() -> dict[str, Any]:
    """torch version, CUDA availability and each GPU's name and compute capability."""
    try:
        torch = importlib.import_module("torch")
    except Exception as exc:  # noqa: BLE001
        return {"installed": False, "error": str(exc).splitlines()[0]}
    info: dict[str, Any] = {
        "installed": True,
        "version": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "threads": torch.get_num_threads(),
        "gpus": [],
    }
    if info["cuda_available"]:
        for i in range(torch.cuda.device_count()):
            major, minor = torch.cuda.get_device_capability(i)
            info["gpus"].append(
                {
                    "index": i,
                    "name": torch.cuda.get_device_name(i),
                    "compute_capability": f"{major}.{minor}",
                    "memory_gib": round(
                        torch.cuda.get_device_properties(i).total_memory / 2**30, 1
                    ),
                }
            )
    return info


def environment_report(include_torch: bool = True) -> dict[str, Any]:
    """Everything a bug report needs, as plain data."""
    trt = real_tensorrt()
    cpu = cpu_info()
    report: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu": {**cpu.to_dict(), "isa": cpu.isa_line()},
        "thread_env": {
            k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ
        },
        "packages": package_versions(),
        "onnxruntime": onnxruntime_info(),
        "tensorrt": {"installed": trt is not None, "version": getattr(trt, "__version__", None)},
    }
    if include_torch:
        report["torch"] = torch_info()
    return report
