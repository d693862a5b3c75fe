"""``simmim-deploy export``: fine-tuned checkpoint -> verified deployment bundle."""

from __future__ import annotations

import typer

from simmim_deploy.cli.options import config_command
from simmim_deploy.export.config import ExportConfig

DOC = """Export a fine-tuned checkpoint to a verified ONNX bundle (FP32/FP16/INT8).

Example: simmim-deploy export runs/cls/best.pt --out bundle --precision int8
--calib-data builtin:mnist --eval-data builtin:mnist (profiles: --config export/*.yaml)
"""


def _run(cfg: ExportConfig) -> None:  # the config is validated before torch is imported
    import logging

    from simmim_deploy.cli.progress import step_progress
    from simmim_deploy.export.bundle import export_bundle

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    with step_progress("export") as on_step:
        bundle = export_bundle(cfg, on_step)
    typer.echo(f"bundle written: {bundle} ({', '.join(cfg.precision)}; see report/parity.json)")
    typer.echo(f"next: simmim-deploy predict {bundle} IMAGES/  (or: simmim-deploy serve {bundle})")


export = config_command(ExportConfig, _run, DOC)
