"""``simmim-deploy evaluate``: score a fine-tuned checkpoint on labelled data."""

from __future__ import annotations

from pathlib import Path

import typer


def evaluate(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="best.pt of train classify|detect."),
    data: str = typer.Option(
        ..., "--data", help="Labelled data: builtin:NAME (held-out part), a folder, ..."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Where metrics.json and plots go (default: beside the checkpoint)."
    ),
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto."),
    batch_size: int = typer.Option(64, "--batch-size", help="Images per forward pass."),
) -> None:
    """Evaluate a fine-tuned checkpoint: classification top-1/top-5, per-class P/R/F1 and a
    confusion matrix; detection COCO mAP. Writes OUT/metrics.json and plots.

    Example: simmim-deploy evaluate --checkpoint runs/classify/best.pt --data builtin:digits
    """
    import json

    from simmim_deploy.train.evaluate import evaluate_checkpoint

    target = out if out is not None else _default_out(checkpoint)
    metrics = evaluate_checkpoint(checkpoint, data, target, device, batch_size)
    brief = {
        k: metrics[k]
        for k in (
            "task",
            "top1",
            "top5",
            "macro_f1",
            "mAP",
            "mAP50",
            "num_samples",
            "skipped_files",
        )
        if k in metrics
    }
    typer.echo(json.dumps(brief))
    typer.echo(f"metrics: {Path(target) / 'metrics.json'}")


def _default_out(checkpoint: Path) -> Path:
    """``RUN/eval`` beside ``RUN/best.pt`` (never overwrites the training metrics.json)."""
    run = checkpoint if checkpoint.is_dir() else checkpoint.parent
    return run / "eval"
