"""``simmim-deploy evaluate``: score a fine-tuned checkpoint on labelled data."""

from __future__ import annotations

import json

import typer

from simmim_deploy.cli.options import config_command
from simmim_deploy.train.evaluate import EvaluateConfig

DOC = """Evaluate a fine-tuned checkpoint: classification top-1/top-5, per-class P/R/F1 and a
confusion matrix; detection COCO mAP (every score in percent). Writes OUT/metrics.json and plots.

Example: simmim-deploy evaluate runs/classify/best.pt --data builtin:digits
"""

BRIEF = ("task", "top1", "top5", "macro_f1", "mAP", "mAP50", "num_samples", "skipped_files")


def _run(cfg: EvaluateConfig) -> None:
    from simmim_deploy.train.evaluate import evaluate_checkpoint

    target = cfg.out_dir()
    metrics = evaluate_checkpoint(cfg.checkpoint, cfg.data, target, cfg.device, cfg.batch_size)
    typer.echo(json.dumps({k: metrics[k] for k in BRIEF if k in metrics}))
    typer.echo(f"metrics: {target / 'metrics.json'}")


evaluate = config_command(EvaluateConfig, _run, DOC)
