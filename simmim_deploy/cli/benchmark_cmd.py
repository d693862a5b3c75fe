"""`simmim-deploy benchmark`: latency/throughput per backend, precision and batch size."""

from __future__ import annotations

from pathlib import Path

from simmim_deploy.cli.options import config_command
from simmim_deploy.serve.bench import BenchmarkConfig

DOC = """Warm-up, then model-only and end-to-end latency (mean/p50/p90/p99) and images/s.

Example: simmim-deploy benchmark runs/bundle --backend ort,torch --batch-size 1,8,32
"""
COLUMNS = ("backend", "precision", "batch", "model p50 ms", "model p99 ms", "model img/s",
           "e2e p50 ms", "e2e p99 ms", "e2e img/s")  # fmt: skip


def _run(cfg: BenchmarkConfig) -> None:
    from rich.console import Console

    from simmim_deploy.cli.progress import count_progress
    from simmim_deploy.cli.targets import open_target
    from simmim_deploy.core.manifest import is_checkpoint
    from simmim_deploy.serve.bench import run_benchmark

    names = list(cfg.backend)
    extra = {}
    torch_backend, manifest = open_target(
        cfg.target, "torch" if "torch" in names else None, cfg.threads
    )
    if torch_backend is not None:
        extra["torch"] = torch_backend
    checkpoint = is_checkpoint(cfg.target)
    if checkpoint:
        names = ["torch"]  # a checkpoint has no ONNX files to compare with
    target = cfg.target
    out = cfg.out or (str(Path(target).parent) if checkpoint else target)
    with count_progress("benchmark") as on_progress:
        report = run_benchmark(
            target, names, list(cfg.batch_size), cfg.duration, cfg.images, out,
            list(cfg.precision) if cfg.precision else None, cfg.threads, cfg.warmup,
            extra_backends=extra, manifest=manifest if checkpoint else None,
            on_progress=on_progress,
        )  # fmt: skip
    Console().print(_table(report, target))
    Console().print(
        f"wrote {report['json']}" + (f" and {report['plot']}" if report["plot"] else "")
    )


def _table(report: dict, target: str):  # noqa: ANN202 - a rich Table
    from rich.table import Table

    table = Table(title=f"benchmark: {target} ({report['images']['source']})")
    for col in COLUMNS:
        table.add_column(col, justify="right")
    for r in report["results"]:
        m, e = r["model_only"], r["end_to_end"]
        table.add_row(
            r["backend"], r["precision"], str(r["batch"]), f"{m['p50_ms']:.2f}",
            f"{m['p99_ms']:.2f}", f"{m['images_per_s']:.1f}", f"{e['p50_ms']:.2f}",
            f"{e['p99_ms']:.2f}", f"{e['images_per_s']:.1f}",
        )  # fmt: skip
    return table


benchmark = config_command(BenchmarkConfig, _run, DOC)
