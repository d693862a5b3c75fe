"""Inference backends behind one interface, and the table that picks one.

``--backend`` takes a name from :data:`BACKENDS` (declared in :mod:`simmim_deploy.core.backends`)
or a model file, whose suffix picks the backend (:data:`SUFFIXES`). ``auto`` prefers a TensorRT
engine built for this GPU, then ONNX Runtime on a GPU provider; on a CPU-only machine it runs the
fastest verified (backend, artefact) pair, measured once and cached (:mod:`.auto`). The PyTorch
backend lives outside the edge runtime (it needs torch); callers pass any object implementing
:class:`Backend` instead of a name.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Any

from simmim_deploy.core.backends import BACKENDS, ONNX_BACKENDS
from simmim_deploy.core.errors import MissingExtraError, UserError
from simmim_deploy.serve.backends.base import Backend, max_batch_of, run_any_batch

__all__ = [
    "BACKENDS",
    "SUFFIXES",
    "Backend",
    "max_batch_of",
    "open_backend",
    "open_onnx_file",
    "runs_file",
    "run_any_batch",
]

SUFFIXES = {".onnx": "ort", ".xml": "openvino", ".engine": "trt", ".plan": "trt", ".trt": "trt"}
# Model files a backend of ONNX_BACKENDS reads: ONNX everywhere, OpenVINO IR on OpenVINO only.
IR_SUFFIX = ".xml"


def runs_file(backend: str, file: str) -> bool:
    """Whether ``backend`` (one of ``ONNX_BACKENDS``) can run the artefact file ``file``."""
    return file.endswith(".onnx") or (backend == "openvino" and file.endswith(IR_SUFFIX))


def suggest(name: str, choices: Any) -> str:
    """`` (did you mean 'x'?)`` for the closest choice (no yaml import: edge runtime)."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def onnx_artefact(
    bundle: Path, manifest: dict[str, Any], precision: str | None, backend: str = "ort"
) -> tuple[Path, str]:
    """The model file for ``precision`` that ``backend`` runs (default ``fp32``, else the first
    listed): an ONNX file, or on OpenVINO also an IR (``int8-nncf``)."""
    artefacts = manifest["artefacts"]
    onnx = {k: v for k, v in artefacts.items() if runs_file(backend, str(v.get("file", "")))}
    if not onnx:
        raise UserError("the bundle lists no ONNX artefact; re-run simmim-deploy export")
    if precision is None:
        precision = "fp32" if "fp32" in onnx else next(iter(onnx))
    if precision not in onnx:
        ir = str(artefacts.get(precision, {}).get("file", "")).endswith(IR_SUFFIX)
        hint = " (an OpenVINO IR: use --backend openvino or auto)" if ir else ""
        raise UserError(
            f"the bundle has no {precision!r} ONNX model{suggest(precision, onnx)}{hint}; "
            f"it has {sorted(onnx)}"
        )
    path = bundle / onnx[precision]["file"]
    if not path.is_file():
        raise UserError(f"{path} listed in the manifest is missing; re-run simmim-deploy export")
    return path, str(onnx[precision].get("precision", precision))


def _open_trt(bundle: Path, manifest: dict[str, Any], precision: str | None) -> Backend:
    from simmim_deploy.serve.backends.trt import TrtBackend, pick_engine

    entry = pick_engine(manifest, precision)
    return TrtBackend(bundle / entry["file"], precision=str(entry.get("precision", "")))


def _open_file(path: Path, manifest: dict[str, Any], threads: int | None) -> Backend:
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise UserError(f"cannot tell the backend of {path.name}: expected {sorted(SUFFIXES)}")
    precision = next(
        (
            str(a.get("precision", k))
            for k, a in manifest["artefacts"].items()
            if a.get("file") == path.name
        ),
        "",
    )
    if kind == "trt":
        from simmim_deploy.serve.backends.trt import TrtBackend

        return TrtBackend(path, precision=precision)
    if kind == "openvino":
        from simmim_deploy.serve.backends.openvino import OpenVinoBackend

        return OpenVinoBackend(path, threads, precision or "unknown")
    from simmim_deploy.serve.backends.ort import OrtBackend

    return OrtBackend(path, "ort", threads, precision or "unknown")


def _gpu_provider() -> bool:
    """Whether ONNX Runtime here offers a GPU execution provider (CUDA or TensorRT)."""
    import onnxruntime as ort

    gpu = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
    return any(p in gpu for p in ort.get_available_providers())


def open_onnx_file(
    path: str | Path,
    backend: str = "ort-cpu",
    threads: int | None = None,
    precision: str = "",
    throughput: bool = False,
) -> Backend:
    """Open one ONNX file on a backend of :data:`ONNX_BACKENDS` (``precision``: for describe);
    an OpenVINO IR (``.xml``) only on ``openvino``. ``throughput``: OpenVINO's ``THROUGHPUT``
    hint (streams; fast only with ``backend.parallel`` calls in flight, see ``pipeline``)."""
    if backend not in ONNX_BACKENDS:
        raise UserError(f"{backend!r} does not run ONNX files: use one of {list(ONNX_BACKENDS)}")
    if not runs_file(backend, Path(path).name):
        raise UserError(f"{Path(path).name} is an OpenVINO IR: run it with --backend openvino")
    if backend == "openvino":
        from simmim_deploy.serve.backends.openvino import OpenVinoBackend

        hint = "THROUGHPUT" if throughput else "LATENCY"
        return OpenVinoBackend(path, threads, precision or "unknown", hint=hint)
    from simmim_deploy.serve.backends.ort import OrtBackend

    return OrtBackend(path, backend, threads, precision or "unknown")


def _open_onnx(
    bundle: Path,
    manifest: dict[str, Any],
    backend: str,
    precision: str | None,
    threads: int | None,
    throughput: bool = False,
) -> Backend:
    name = "ort" if backend == "auto" else backend
    path, prec = onnx_artefact(bundle, manifest, precision, name)
    return open_onnx_file(path, name, threads, prec, throughput)


def open_backend(
    bundle: str | Path,
    manifest: dict[str, Any],
    backend: str = "auto",
    precision: str | None = None,
    threads: int | None = None,
    throughput: bool = False,
) -> Backend:
    """Open the backend named by ``backend`` (a :data:`BACKENDS` key or a model file path).

    Args:
        bundle: the bundle directory (model files are relative to it).
        manifest: its manifest (``read_manifest``).
        backend: a key of :data:`BACKENDS` or a model file path.
        precision: artefact key (``fp32``, ``fp16``, ``int8``...); None: fp32 / any engine.
        threads: inference threads (ONNX Runtime intra-op, OpenVINO ``INFERENCE_NUM_THREADS``;
            None: library default).
        throughput: the caller keeps ``backend.parallel`` batches in flight (offline
            ``predict``): OpenVINO then runs with its ``THROUGHPUT`` hint (one stream per core
            group); ``auto`` still ranks the candidates one synchronous call at a time.
    """
    bundle = Path(bundle)
    if backend not in BACKENDS:
        path = Path(backend) if Path(backend).is_file() else bundle / backend
        if path.is_file():
            return _open_file(path, manifest, threads)
        raise UserError(
            f"unknown backend {backend!r}{suggest(backend, BACKENDS)}: use one of "
            f"{sorted(BACKENDS)}, torch (CLI, needs PyTorch) or a model file"
        )
    if backend == "trt":
        return _open_trt(bundle, manifest, precision)
    if backend != "auto":
        return _open_onnx(bundle, manifest, backend, precision, threads, throughput)
    note = None
    if manifest.get("engines"):
        try:
            return _open_trt(bundle, manifest, precision)
        except (MissingExtraError, UserError, RuntimeError) as exc:
            note = f"TensorRT engine not used: {exc}"  # reported by describe()
    if _gpu_provider():
        runner = _open_onnx(bundle, manifest, "auto", precision, threads)
    else:
        from simmim_deploy.serve.backends.auto import choose_backend

        def open_one(name: str, prec: str) -> Backend:
            return _open_onnx(bundle, manifest, name, prec, threads)

        runner, choice = choose_backend(manifest, open_one, precision, threads)
        print(choice.line(), file=sys.stderr)
        note = f"{note}; {choice.line()}" if note else choice.line()
        if throughput and choice.backend == "openvino":
            runner = _open_onnx(bundle, manifest, "openvino", choice.precision, threads, True)
    if note and hasattr(runner, "notes"):
        runner.notes.append(note)
    return runner
