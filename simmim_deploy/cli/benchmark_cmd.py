"""`simmim-deploy benchmark`: latency/throughput per backend, precision and batch size."""

from __future__ import annotations

from pathlib import Path

import typer

from simmim_deploy.core.backends import backend_help


def _ints(text: str) -> list[int]:
    from simmim_deploy.core.errors import UserError

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--batch-sizes must be integers like 1,8,32, got {text!r}") from None
    if not values or min(values) < 1:
        raise UserError(f"--batch-sizes must be positive integers, got {text!r}")
    return values


def benchmark(
    target: Path = typer.Argument(..., help="Bundle directory, or a fine-tuned checkpoint."),
    backends: str = typer.Option("ort", help="Comma list of " + backend_help("torch")),
    batch_sizes: str = typer.Option("1,8,32", help="Comma list of batch sizes."),
    duration: float = typer.Option(5.0, help="Seconds per backend/precision/batch setting."),
    images: str | None = typer.Option(None, help="Real images: folder, glob or .txt list."),
    precisions: str | None = typer.Option(None, help="ONNX artefacts, e.g. fp32,int8 (all)."),
    threads: int | None = typer.Option(None, help="Inference threads (ONNX Runtime intra-op)."),
    out: Path | None = typer.Option(None, help="Folder for benchmark.json/png (default: bundle)."),
) -> None:
    """Warm-up, then model-only and end-to-end latency (mean/p50/p90/p99) and images/s.

    Example: simmim-deploy benchmark runs/bundle --backends ort,torch --batch-sizes 1,8,32
    """
    from rich.console import Console
    from rich.table import Table

    from simmim_deploy.cli.targets import open_target
    from simmim_deploy.core.manifest import is_checkpoint
    from simmim_deploy.serve.bench import run_benchmark

    names = [b.strip() for b in backends.split(",") if b.strip()]
    extra = {}
    torch_backend, manifest = open_target(target, "torch" if "torch" in names else None, threads)
    if torch_backend is not None:
        extra["torch"] = torch_backend
    if is_checkpoint(target):
        names = ["torch"]  # a checkpoint has no ONNX files to compare with
    report = run_benchmark(
        target, names, _ints(batch_sizes), duration, images,
        out or (target.parent if is_checkpoint(target) else target),
        precisions.split(",") if precisions else None, threads,
        extra_backends=extra, manifest=manifest if is_checkpoint(target) else None,
    )  # fmt: skip
    table = Table(title=f"benchmark: {target} ({report['images']['source']})")
    for col in ("backend", "precision", "batch", "model p50 ms", "model p99 ms", "model img/s",
                "e2e p50 ms", "e2e p99 ms", "e2e img/s"):  # fmt: skip
        table.add_column(col, justify="right")
    for r in report["results"]:
        m, e = r["model_only"], r["end_to_end"]
        table.add_row(
            r["backend"], r["precision"], str(r["batch"]), f"{m['p50_ms']:.2f}",
            f"{m['p99_ms']:.2f}", f"{m['images_per_s']:.1f}", f"{e['p50_ms']:.2f}",
            f"{e['p99_ms']:.2f}", f"{e['images_per_s']:.1f}",
        )  # fmt: skip
    console = Console()
    console.print(table)
    console.print(f"wrote {report['json']}" + (f" and {report['plot']}" if report["plot"] else ""))
