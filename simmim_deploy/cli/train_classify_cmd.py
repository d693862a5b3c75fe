"""``simmim-deploy train classify``: fine-tune or linear-probe a classifier."""

from __future__ import annotations

import typer

from simmim_deploy.cli.options import config_command
from simmim_deploy.train.classify_config import ClassifyConfig
from simmim_deploy.train.run_options import FinetuneOptions

DOC = """Fine-tune a classifier from a SimMIM encoder (or from scratch with --pretrained none).

Writes OUT/best.pt and OUT/last.pt (resumable), metrics.json, confusion_matrix.png,
training_curves.png, config.yaml, metrics.csv and TensorBoard events.

Example: simmim-deploy train classify --data builtin:digits --model vit_nano_patch8_32
--pretrained runs/pretrain/encoder.safetensors --epochs 30 --labels-per-class 10
--out runs/classify
"""


def _run(cfg: ClassifyConfig) -> None:
    from simmim_deploy.train.classify import run_classify

    summary = run_classify(cfg)
    if summary:  # rank 0 only
        state = "done" if summary.completed else "stopped early (resume with --resume)"
        top1 = summary.best.get("top1")
        score = f"best val top-1 {top1:.2f}% (epoch {summary.best_epoch})" if top1 else "no val"
        typer.echo(
            f"classify {state}: {score}, {summary.train_images} training images, "
            f"{summary.skipped_files} file(s) skipped; checkpoint: {summary.checkpoint}"
        )


classify = config_command(ClassifyConfig, _run, DOC, shared=FinetuneOptions)
