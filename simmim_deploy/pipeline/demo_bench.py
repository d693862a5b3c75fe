"""The demo's benchmark: PyTorch eager against ONNX Runtime FP32 and INT8 on the same bundle.

The serving runtime stays torch-free; the PyTorch side enters as the export stage's
``TorchBackend`` (over the same ``TorchRunner`` the verification gate uses).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simmim_deploy.models.torch_backend import open_torch_backend

TORCH = "torch"


def benchmark_bundle(
    bundle: Path,
    checkpoint: Path,
    images: Path,
    out: Path,
    batch_sizes: tuple[int, ...],
    seconds: float,
) -> dict[str, Any]:
    """Benchmark PyTorch eager, ORT FP32 and ORT INT8 on real images; add speed-ups.

    Returns:
        ``{"rows": [{"backend", "precision", "batch", "images_per_s", "p50_ms",
        "e2e_images_per_s", "speedup"}], "json", "plot", "environment"}`` where ``speedup``
        is model-only throughput over PyTorch eager's at the same batch size.
    """
    from simmim_deploy.serve.bench import run_benchmark

    report = run_benchmark(
        bundle,
        backends=[TORCH, "ort-cpu"],
        batch_sizes=batch_sizes,
        duration=seconds,
        images=str(images),
        out_dir=out,
        precisions=["fp32", "int8"],
        extra_backends={TORCH: open_torch_backend(checkpoint)[0]},
        warmup=2,
    )
    return {
        "rows": speedup_rows(report["results"]),
        "json": report["json"],
        "plot": report["plot"],
        "environment": report["environment"],
    }


def speedup_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (backend, precision, batch), model-only throughput relative to PyTorch."""
    eager = {r["batch"]: r["model_only"]["images_per_s"] for r in results if r["backend"] == TORCH}
    rows = []
    for r in results:
        ips = float(r["model_only"]["images_per_s"])
        base = eager.get(r["batch"])
        rows.append(
            {
                "backend": "pytorch-eager" if r["backend"] == TORCH else "onnxruntime",
                "precision": r["precision"],
                "batch": r["batch"],
                "images_per_s": ips,
                "p50_ms": r["model_only"]["p50_ms"],
                "e2e_images_per_s": r["end_to_end"]["images_per_s"],
                "speedup": round(ips / base, 2) if base else None,
            }
        )
    return rows
