"""``simmim-deploy build``: TensorRT engine from a bundle's ONNX (or any model.onnx)."""

from __future__ import annotations

from pathlib import Path

import typer


def build(
    source: Path = typer.Argument(..., help="Bundle directory or a model.onnx file."),
    batch: str | None = typer.Option(
        None, "--batch", help="Profile MIN:OPT:MAX (default: bundle's)."
    ),
    workspace: float = typer.Option(4.0, "--workspace", help="Builder workspace in GiB."),
    precision: str | None = typer.Option(
        None, "--precision", help="fp32, fp16 or int8 (default: every ONNX in the bundle)."
    ),
) -> None:
    """Build a TensorRT engine on this GPU (engine file raw, facts in manifest.json).

    Example: simmim-deploy build bundle --precision fp16 --batch 1:8:32 --workspace 4
    """
    from simmim_deploy.export.tensorrt_build import BuildConfig, build_engines

    cfg = BuildConfig(source=str(source), batch=batch, workspace_gib=workspace, precision=precision)
    for entry in build_engines(cfg):
        typer.echo(
            f"engine written: {entry['file']} (sm{entry['compute_capability']}, "
            f"TensorRT {entry['tensorrt_version']}, batch {entry['batch']})"
        )
    typer.echo(f"next: simmim-deploy serve {source} --backend trt  (or: simmim-deploy triton)")
