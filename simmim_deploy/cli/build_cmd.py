"""``simmim-deploy build``: TensorRT engine from a bundle's ONNX (or any model.onnx)."""

from __future__ import annotations

import typer

from simmim_deploy.cli.options import config_command
from simmim_deploy.export.tensorrt_build import BuildConfig

DOC = """Build a TensorRT engine on this GPU (engine file raw, facts in manifest.json).

Example: simmim-deploy build bundle --precision fp16 --batch 1:8:32 --workspace 4
"""


def _run(cfg: BuildConfig) -> None:
    from simmim_deploy.export.tensorrt_build import build_engines

    for entry in build_engines(cfg):
        typer.echo(
            f"engine written: {entry['file']} (sm{entry['compute_capability']}, "
            f"TensorRT {entry['tensorrt_version']}, batch {entry['batch']})"
        )
    typer.echo(f"next: simmim-deploy serve {cfg.source} --backend trt  (or: simmim-deploy triton)")


build = config_command(BuildConfig, _run, DOC)
