"""``simmim-deploy train detect``: fine-tune an FCOS detector on a SimMIM encoder."""

from __future__ import annotations

from pathlib import Path

import typer


def detect(
    data: str | None = typer.Option(
        None,
        "--data",
        help="COCO folder (annotations.json + images/, or train/ + val/), yolo:PATH, voc:PATH "
        "or builtin:digits-det.",
    ),
    model: str | None = typer.Option(None, "--model", help="timm model name of the encoder."),
    pretrained: str | None = typer.Option(
        None,
        "--pretrained",
        help="encoder.safetensors, official SimMIM .pth, timm state dict, or 'none' (scratch).",
    ),
    out: Path | None = typer.Option(None, "--out", help="Run folder to write."),
    epochs: int | None = typer.Option(None, "--epochs", help="Number of epochs."),
    img_size: int | None = typer.Option(
        None, "--img-size", help="Square input side (letterboxed); a multiple of 32."
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Images per step per process."
    ),
    accumulation: int | None = typer.Option(
        None, "--accumulation", help="Micro-batches per optimizer step."
    ),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda or auto."),
    precision: str | None = typer.Option(None, "--precision", help="fp32, bf16 or fp16."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed."),
    config: Path | None = typer.Option(
        None, "--config", help="Recipe YAML (train/*.yaml); options given here override it."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pt."),
    val_data: str | None = typer.Option(None, "--val-data", help="Separate validation data."),
    val_split: float | None = typer.Option(
        None, "--val-split", help="Hold out this fraction of --data when it has no val part."
    ),
    lr: float | None = typer.Option(
        None, "--lr", help="Base learning rate per 512 images (default 8e-4)."
    ),
    layer_decay: float | None = typer.Option(
        None, "--layer-decay", help="Layer-wise LR decay (default 0.7 ViT, 0.9 Swin; 1 = off)."
    ),
    warmup_epochs: float | None = typer.Option(None, "--warmup-epochs", help="Warmup epochs."),
    score_thresh: float | None = typer.Option(
        None, "--score-thresh", help="Drop detections scoring at or below this."
    ),
    nms_iou: float | None = typer.Option(None, "--nms-iou", help="Class-aware NMS IoU."),
    max_dets: int | None = typer.Option(None, "--max-dets", help="Detections per image (K)."),
    workers: int | None = typer.Option(None, "--workers", help="DataLoader worker processes."),
    eval_every: int | None = typer.Option(None, "--eval-every", help="Validate every N epochs."),
    stop_at_step: int | None = typer.Option(
        None, "--stop-at-step", help="End this session after global step N (resume later)."
    ),
) -> None:
    """Fine-tune a detector (encoder + ViTDet pyramid or Swin FPN + FCOS head).

    Writes OUT/best.pt (best validation mAP) and OUT/last.pt (resumable), metrics.json
    (COCO mAP@[.5:.95], mAP50), vis/*.jpg with predicted boxes, config.yaml, metrics.csv and
    TensorBoard events.

    Example: simmim-deploy train detect --data builtin:digits-det --model vit_micro_patch8_64
    --pretrained runs/pretrain/encoder.safetensors --epochs 30 --out runs/detect
    """
    from simmim_deploy.core.config import load_config
    from simmim_deploy.train.detect import DetectConfig, run_detect

    overrides = {
        "data": data,
        "model": model,
        "pretrained": pretrained,
        "out": str(out) if out is not None else None,
        "epochs": epochs,
        "img_size": img_size,
        "batch_size": batch_size,
        "accumulation": accumulation,
        "device": device,
        "precision": precision,
        "seed": seed,
        "resume": True if resume else None,
        "val_data": val_data,
        "val_split": val_split,
        "base_lr": lr,
        "layer_decay": layer_decay,
        "warmup_epochs": warmup_epochs,
        "score_thresh": score_thresh,
        "nms_iou": nms_iou,
        "max_dets": max_dets,
        "workers": workers,
        "eval_every": eval_every,
        "stop_at_step": stop_at_step,
    }
    cfg = load_config(DetectConfig, config, overrides)
    summary = run_detect(cfg)
    if summary:  # rank 0 only
        typer.echo(
            f"best mAP {summary.get('mAP', 0.0):.4f} (mAP50 {summary.get('mAP50', 0.0):.4f}) "
            f"at epoch {summary.get('best_epoch')}; checkpoint {summary['checkpoint']}"
        )
