"""``simmim-deploy triton``: a Triton model repository from a bundle."""

from __future__ import annotations

import typer

from simmim_deploy.cli.options import config_command
from simmim_deploy.export.triton import TritonConfig

DOC = """Write a Triton model (config.pbtxt, labels.txt, 1/model.onnx or 1/model.plan).

Example: simmim-deploy triton bundle --out triton_repo --backend onnxruntime --kind gpu
"""


def _run(cfg: TritonConfig) -> None:
    from simmim_deploy.export.triton import write_triton_model

    model_dir = write_triton_model(cfg)
    typer.echo(f"Triton model written: {model_dir}")
    typer.echo(f"next: tritonserver --model-repository {cfg.out}")


triton = config_command(TritonConfig, _run, DOC)
