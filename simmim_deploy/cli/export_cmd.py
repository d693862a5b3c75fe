"""``simmim-deploy export``: fine-tuned checkpoint -> verified deployment bundle."""

from __future__ import annotations

from pathlib import Path

import typer


def export(
    checkpoint: Path = typer.Argument(..., help="Fine-tuned best.pt (or its run folder)."),
    out: Path = typer.Option(..., "--out", help="Bundle directory to create."),
    precision: list[str] | None = typer.Option(
        None,
        "--precision",
        help="fp32|fp16|int8|int8-dynamic|int8-w7; repeat for several (fp32 always).",
    ),
    calib_data: str | None = typer.Option(
        None, "--calib-data", help="Real calibration images: builtin:NAME or a folder (int8)."
    ),
    calib_images: int | None = typer.Option(None, "--calib-images", help="Max calibration images."),
    calib_method: str | None = typer.Option(
        None, "--calib-method", help="minmax, entropy or percentile."
    ),
    int8_scope: str | None = typer.Option(
        None, "--int8-scope", help="linear (Linear layers + patch embed; default) or all."
    ),
    prune: float | None = typer.Option(
        None, "--prune", help="Fraction of heads and MLP channels to remove (structured)."
    ),
    recover_epochs: int | None = typer.Option(
        None, "--recover-epochs", help="Distillation epochs after --prune."
    ),
    batch: str | None = typer.Option(None, "--batch", help="Batch profile MIN:OPT:MAX."),
    eval_data: str | None = typer.Option(
        None,
        "--eval-data",
        help="Labelled held-out data for the task metric: top-1 (builtin:mnist, ImageFolder) "
        "or COCO mAP (COCO folder, yolo:DIR, voc:DIR, builtin:digits-det).",
    ),
    config: Path | None = typer.Option(
        None, "--config", help="Export profile YAML (export/*.yaml); options here override it."
    ),
    triton: bool = typer.Option(False, "--triton", help="Also write BUNDLE/triton (Triton repo)."),
    target: str | None = typer.Option(
        None,
        "--target",
        help="cpu: every CPU artefact worth choosing among (fp32, int8, int8-dynamic, int8-w7), "
        "each verified; --backend auto picks the fastest where it runs.",
    ),
    exporter: str | None = typer.Option(None, "--exporter", help="auto, dynamo or torchscript."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing bundle."),
) -> None:
    """Export a fine-tuned checkpoint to a verified ONNX bundle (FP32/FP16/INT8).

    Example: simmim-deploy export runs/cls/best.pt --out bundle --precision int8
    --calib-data builtin:mnist --eval-data builtin:mnist
    """
    import logging

    from simmim_deploy.core.config import load_config
    from simmim_deploy.export.config import ExportConfig

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    overrides = {
        "checkpoint": str(checkpoint),
        "out": str(out),
        "precision": tuple(precision) if precision else None,
        "calib_data": calib_data,
        "calib_images": calib_images,
        "calib_method": calib_method,
        "int8_scope": int8_scope,
        "prune": prune,
        "recover_epochs": recover_epochs,
        "batch": batch,
        "eval_data": eval_data,
        "triton": triton or None,
        "target": target,
        "exporter": exporter,
        "overwrite": overwrite or None,
    }
    cfg = load_config(ExportConfig, config, overrides)  # validates before torch is imported
    from simmim_deploy.cli.progress import step_progress
    from simmim_deploy.export.bundle import export_bundle

    with step_progress("export") as on_step:
        bundle = export_bundle(cfg, on_step)
    typer.echo(f"bundle written: {bundle} ({', '.join(cfg.precision)}; see report/parity.json)")
    typer.echo(f"next: simmim-deploy predict {bundle} IMAGES/  (or: simmim-deploy serve {bundle})")
