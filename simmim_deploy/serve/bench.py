"""Benchmark a bundle: latency and throughput per backend, precision and batch size.

Two measurements per setting, both after a warm-up: **model-only** (a preprocessed batch through
the backend) and **end-to-end** (decode + preprocess + infer + post-process of real encoded
images, one batch at a time). Device, library versions and thread settings are recorded so
numbers from different machines are never compared blindly. Writes ``benchmark.json`` and, when
matplotlib is installed, ``benchmark.png`` (the edge runtime never needs matplotlib).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from simmim_deploy.core.atomic import atomic_write_text
from simmim_deploy.core.backends import ONNX_BACKENDS, backend_help
from simmim_deploy.core.config import flag_for, option
from simmim_deploy.core.cpu import cpu_info
from simmim_deploy.core.errors import UserError
from simmim_deploy.core.manifest import read_manifest
from simmim_deploy.serve.backends import Backend, runs_file
from simmim_deploy.serve.predict import expand_sources
from simmim_deploy.serve.runtime import Runtime

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
    """What ``simmim-deploy benchmark`` measures (help text in each field)."""

    target: str = option(help="Bundle directory, or a fine-tuned checkpoint.", positional=True)
    backend: tuple[str, ...] = option(
        ("ort",), "Backends to compare: " + backend_help("torch"), old_flags=("--backends",)
    )
    batch_size: tuple[int, ...] = option(
        (1, 8, 32), "Images per inference call, one setting each.", old_flags=("--batch-sizes",)
    )
    precision: tuple[str, ...] | None = option(
        None, "Bundle artefacts, e.g. fp32,int8 (default: all).", old_flags=("--precisions",)
    )
    duration: float = option(
        5.0, "Seconds per backend/precision/batch setting.", flag="--seconds",
        old_flags=("--duration",),
    )  # fmt: skip
    warmup: int = option(3, "Untimed calls before each measurement.")
    images: str | None = option(None, "Real images: a folder, glob or .txt list.")
    threads: int | None = option(None, "Inference threads (ONNX Runtime intra-op).")
    out: str | None = option(None, "Folder for benchmark.json/png (default: the bundle).")

    def __post_init__(self) -> None:
        if self.duration <= 0:
            raise UserError(f"{flag_for(self, 'duration')} must be > 0, got {self.duration}")
        if not self.batch_size or min(self.batch_size) < 1:
            raise UserError(
                f"{flag_for(self, 'batch_size')} must be positive integers, got "
                f"{list(self.batch_size)}"
            )
        if not self.backend:
            raise UserError(f"{flag_for(self, 'backend')}: name at least one backend")


def latency_stats(seconds: list[float], batch: int) -> dict[str, float]:
    """Mean/p50/p90/p99 latency in ms per batch and images/s from per-call times."""
    ms = np.asarray(seconds) * 1000.0
    return {
        "iterations": len(seconds),
        "mean_ms": round(float(ms.mean()), 3),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p90_ms": round(float(np.percentile(ms, 90)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "images_per_s": round(batch * len(seconds) / float(np.sum(seconds)), 2),
    }


def _time_calls(
    fn: Callable[[], Any], duration: float, warmup: int, min_iters: int = 3
) -> list[float]:
    for _ in range(warmup):
        fn()
    times: list[float] = []
    end = time.perf_counter() + duration
    while len(times) < min_iters or time.perf_counter() < end:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def sample_images(images: str | None, count: int = 32) -> tuple[list[bytes], str]:
    """Encoded images to benchmark on: the user's, else real photos from scikit-image.

    A file that does not decode is skipped and named (on stderr and in the source line), as
    ``predict`` does, instead of stopping the benchmark.
    """
    if images:
        return _readable_images(images, count)
    from PIL import Image

    try:
        from skimage import data

        photos = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
        origin = "scikit-image sample photos"
    except ImportError:  # no real photos available: say so in the report
        rng = np.random.default_rng(0)
        photos = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)]
        origin = "synthetic noise (pass --images DIR for real images)"
    out = []
    for i in range(min(count, 8)):
        buf = io.BytesIO()
        Image.fromarray(photos[i % len(photos)]).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out, origin


def _readable_images(images: str, count: int) -> tuple[list[bytes], str]:
    from simmim_deploy.serve.images import ImageError, load_image

    encoded, skipped = [], []
    for path in expand_sources([images]):
        data = Path(path).read_bytes()
        try:
            load_image(data)
        except ImageError as exc:
            skipped.append(Path(path).name)
            log.warning("benchmark skips %s: %s", path, exc)
            continue
        encoded.append(data)
        if len(encoded) == count:
            break
    if not encoded:
        raise UserError(f"no readable image in {images}: all {len(skipped)} file(s) skipped")
    note = f" ({len(skipped)} unreadable skipped: {', '.join(skipped[:5])})" if skipped else ""
    return encoded, images + note


def environment(threads: int | None) -> dict[str, Any]:
    """Device, versions and thread settings of this run."""
    import onnxruntime
    import PIL

    cpu = cpu_info()
    env: dict[str, Any] = {
        "machine": platform.machine(),
        "processor": cpu.model,
        "isa": cpu.isa_line(),
        "cpu_flags": cpu.flags,
        "cpu_count": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnxruntime_providers": onnxruntime.get_available_providers(),
        "threads": {
            "ort_intra_op": threads or "default",
            **{k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        },
    }
    if importlib.util.find_spec("openvino") is not None:
        import openvino

        env["openvino"] = openvino.get_version()
    from simmim_deploy.core.environment import real_tensorrt

    if (trt := real_tensorrt()) is not None:
        env["tensorrt"] = trt.__version__
    return env


def bench_runtime(
    runtime: Runtime, encoded: list[bytes], batch: int, duration: float, warmup: int
) -> dict[str, Any]:
    """Model-only and end-to-end figures of one runtime at one batch size."""
    prepared = [runtime.prepare(e) for e in encoded]
    x = np.stack([prepared[i % len(prepared)].array for i in range(batch)])
    model = _time_calls(lambda: runtime.infer(x), duration / 2, warmup)
    chosen = [encoded[i % len(encoded)] for i in range(batch)]

    def end_to_end() -> None:
        runtime.predict_prepared([runtime.prepare(e) for e in chosen])

    e2e = _time_calls(end_to_end, duration / 2, warmup)
    return {"model_only": latency_stats(model, batch), "end_to_end": latency_stats(e2e, batch)}


def run_benchmark(
    bundle: str | Path,
    backends: list[str] | tuple[str, ...] = ("auto",),
    batch_sizes: list[int] | tuple[int, ...] = (1, 8, 32),
    duration: float = 5.0,
    images: str | None = None,
    out_dir: str | Path | None = None,
    precisions: list[str] | None = None,
    threads: int | None = None,
    warmup: int = 3,
    extra_backends: dict[str, Backend] | None = None,
    manifest: dict[str, Any] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Benchmark every (backend, precision, batch size) and write the report.

    Args:
        bundle: bundle directory.
        backends: backend names (``auto``, ``ort``, ``ort-cpu``, ``trt``...) or keys of
            ``extra_backends`` (e.g. ``torch``, opened by the caller).
        batch_sizes: batch sizes to measure.
        duration: seconds per (backend, precision, batch), split between model-only and e2e.
        images: folder/glob/list of real images (default: photos shipped with scikit-image).
        out_dir: where ``benchmark.json``/``benchmark.png`` go (default: the bundle).
        precisions: ONNX artefact keys for ONNX Runtime (default: every one in the bundle).
        threads: ONNX Runtime intra-op threads.
        warmup: untimed calls before each measurement.
        extra_backends: ready-made backends by name.
        manifest: manifest to use instead of ``bundle/manifest.json``.
        on_progress: called with ``(settings done, settings)`` after each one.

    Returns:
        ``{"environment", "images", "results": [{"backend", "precision", "batch", "describe",
        "model_only": {...}, "end_to_end": {...}}], "json", "plot"}``.
    """
    if duration <= 0 or not batch_sizes or min(batch_sizes) < 1:
        raise UserError("benchmark: the duration must be > 0 s and batch sizes at least 1")
    encoded, origin = sample_images(images)
    extra = extra_backends or {}
    opened = [
        (name, runtime, precision)
        for name in backends
        for runtime, precision in _runtimes(bundle, name, precisions, threads, extra, manifest)
    ]
    settings = [(*o, batch) for o in opened for batch in batch_sizes]
    results = []
    for name, runtime, precision, batch in settings:
        figures = bench_runtime(runtime, encoded, batch, duration, warmup)
        results.append(
            {"backend": name, "precision": precision, "batch": batch,
             "describe": runtime.backend.describe(), **figures}
        )  # fmt: skip
        if on_progress is not None:
            on_progress(len(results), len(settings))
    report: dict[str, Any] = {
        "bundle": str(bundle),
        "environment": environment(threads),
        "images": {"source": origin, "count": len(encoded)},
        "duration_s": duration,
        "warmup": warmup,
        "results": results,
    }
    out = Path(out_dir) if out_dir else Path(bundle)
    out.mkdir(parents=True, exist_ok=True)
    report["json"] = str(out / "benchmark.json")
    report["plot"] = _plot(results, out / "benchmark.png")
    atomic_write_text(out / "benchmark.json", json.dumps(report, indent=2) + "\n")
    return report


def _runtimes(
    bundle: str | Path,
    name: str,
    precisions: list[str] | None,
    threads: int | None,
    extra: dict[str, Backend],
    manifest: dict[str, Any] | None,
) -> list[tuple[Runtime, str]]:
    if name in extra:
        backend = extra[name]
        runtime = Runtime(bundle, backend, manifest=manifest)
        return [(runtime, str(backend.describe().get("precision", "fp32")))]
    if name == "torch":
        raise UserError("the torch backend needs PyTorch: use the CLI or pass extra_backends")
    if name in ONNX_BACKENDS:
        artefacts = (manifest or read_manifest(bundle))["artefacts"]
        keys = precisions or [k for k, a in artefacts.items() if runs_file(name, str(a["file"]))]
        return [(Runtime(bundle, name, k, threads, manifest=manifest), k) for k in keys]
    runtime = Runtime(bundle, name, None, threads, manifest=manifest)
    return [(runtime, str(runtime.backend.describe().get("precision", "")))]


def _plot(results: list[dict[str, Any]], path: Path) -> str | None:
    """Throughput vs batch size per backend/precision; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    series: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
    for r in results:
        for kind in ("model_only", "end_to_end"):
            key = (r["backend"], r["precision"], kind)
            series.setdefault(key, []).append((r["batch"], r[kind]["images_per_s"]))
    for (backend, precision, kind), points in series.items():
        xs, ys = zip(*sorted(points), strict=True)
        style = "-o" if kind == "model_only" else "--s"
        ax.plot(xs, ys, style, label=f"{backend} {precision} {kind.replace('_', '-')}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("images / s")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return str(path)
