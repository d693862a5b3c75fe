"""``simmim-deploy triton``: a Triton model repository from a bundle."""

from __future__ import annotations

from pathlib import Path

import typer


def triton(
    bundle: Path = typer.Argument(..., help="Bundle directory."),
    out: Path = typer.Option(..., "--out", help="Model repository to write (or add to)."),
    backend: str = typer.Option("onnxruntime", "--backend", help="onnxruntime or tensorrt."),
    precision: str = typer.Option("fp32", "--precision", help="Artefact/engine precision."),
    name: str = typer.Option("simmim", "--name", help="Model name in the repository."),
    max_batch_size: int | None = typer.Option(
        None, "--max-batch-size", help="Default: bundle's max."
    ),
    max_queue_delay_us: int = typer.Option(2000, "--max-queue-delay-us", help="Batching delay."),
    instances: int = typer.Option(1, "--instances", help="Model instances (per GPU for gpu)."),
    kind: str | None = typer.Option(
        None, "--kind", help="cpu or gpu instances. Default: gpu for tensorrt, cpu for onnxruntime."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT/NAME if it exists."),
) -> None:
    """Write a Triton model (config.pbtxt, labels.txt, 1/model.onnx or 1/model.plan).

    Example: simmim-deploy triton bundle --out triton_repo --backend onnxruntime --kind gpu
    """
    from simmim_deploy.export.triton import write_triton_repo

    model_dir = write_triton_repo(
        bundle,
        out,
        backend=backend,
        precision=precision,
        name=name,
        max_batch_size=max_batch_size,
        max_queue_delay_us=max_queue_delay_us,
        instances=instances,
        kind=kind,
        overwrite=overwrite,
    )
    typer.echo(f"Triton model written: {model_dir}")
    typer.echo(f"next: tritonserver --model-repository {out}")
