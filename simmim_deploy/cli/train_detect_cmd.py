"""``simmim-deploy train detect``: fine-tune a detector on a SimMIM encoder."""

from __future__ import annotations

import typer

from simmim_deploy.cli.options import config_command
from simmim_deploy.train.detect_config import DetectConfig
from simmim_deploy.train.run_options import FinetuneOptions

DOC = """Fine-tune a detector (encoder + ViTDet pyramid or Swin FPN + dense head).

Writes OUT/best.pt (best validation mAP) and OUT/last.pt (resumable), metrics.json
(COCO mAP@[.5:.95], mAP50), vis/*.jpg with predicted boxes, config.yaml, metrics.csv and
TensorBoard events.

Example: simmim-deploy train detect --data builtin:digits-det --model vit_micro_patch8_64
--pretrained runs/pretrain/encoder.safetensors --epochs 30 --out runs/detect
"""


def _run(cfg: DetectConfig) -> None:
    from simmim_deploy.train.detect import run_detect

    summary = run_detect(cfg)
    if summary:  # rank 0 only
        best = summary.best
        typer.echo(
            f"best mAP {best.get('mAP', 0.0):.2f}% (mAP50 {best.get('mAP50', 0.0):.2f}%) "
            f"at epoch {summary.best_epoch}; checkpoint {summary.checkpoint}"
        )


detect = config_command(DetectConfig, _run, DOC, shared=FinetuneOptions)
