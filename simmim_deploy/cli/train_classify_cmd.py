"""``simmim-deploy train classify``: fine-tune or linear-probe a classifier."""

from __future__ import annotations

from pathlib import Path

import typer


def classify(
    data: str | None = typer.Option(
        None, "--data", help="builtin:mnist|digits, ROOT/<class>/*, or ROOT/{train,val}/<class>/*."
    ),
    model: str | None = typer.Option(None, "--model", help="timm model name of the encoder."),
    pretrained: str | None = typer.Option(
        None,
        "--pretrained",
        help="encoder.safetensors, official SimMIM .pth, timm state dict, or 'none' (scratch).",
    ),
    epochs: int | None = typer.Option(None, "--epochs", help="Number of epochs."),
    out: Path | None = typer.Option(None, "--out", help="Run folder to write."),
    img_size: int | None = typer.Option(None, "--img-size", help="Input side in pixels."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Images per step per process."
    ),
    accumulation: int | None = typer.Option(
        None, "--accumulation", help="Micro-batches per optimizer step."
    ),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda or auto."),
    precision: str | None = typer.Option(None, "--precision", help="fp32, bf16 or fp16."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (also the label draw)."),
    config: Path | None = typer.Option(
        None, "--config", help="Recipe YAML (train/*.yaml); options given here override it."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pt."),
    mode: str | None = typer.Option(
        None, "--mode", help="full (fine-tune, layer-wise LR decay) or linear (frozen encoder)."
    ),
    labels_per_class: int | None = typer.Option(
        None, "--labels-per-class", help="Keep K labelled training images per class."
    ),
    label_fraction: float | None = typer.Option(
        None, "--label-fraction", help="Keep this fraction of each class for training."
    ),
    val_split: float | None = typer.Option(
        None, "--val-split", help="Hold out this stratified fraction of --data for validation."
    ),
    val_data: str | None = typer.Option(None, "--val-data", help="Separate validation data."),
    lr: float | None = typer.Option(
        None, "--lr", help="Base learning rate per 512 images (official 1.25e-3)."
    ),
    layer_decay: float | None = typer.Option(
        None, "--layer-decay", help="Layer-wise LR decay (default 0.65 ViT, 0.9 Swin)."
    ),
    warmup_epochs: float | None = typer.Option(None, "--warmup-epochs", help="Warmup epochs."),
    weight_decay: float | None = typer.Option(None, "--weight-decay", help="AdamW decay."),
    drop_path: float | None = typer.Option(None, "--drop-path", help="Stochastic depth."),
    label_smoothing: float | None = typer.Option(
        None, "--label-smoothing", help="Label smoothing (official 0.1)."
    ),
    no_mixup: bool = typer.Option(False, "--no-mixup", help="Switch mixup and cutmix off."),
    randaug: str | None = typer.Option(
        None, "--randaug", help="timm RandAugment string, or 'none'."
    ),
    reprob: float | None = typer.Option(None, "--reprob", help="Random erasing probability."),
    hflip: float | None = typer.Option(None, "--hflip", help="Horizontal flip probability."),
    head_norm: bool | None = typer.Option(
        None,
        "--head-norm/--no-head-norm",
        help="BatchNorm (no affine) before the head, as MAE's linear probe (default: linear).",
    ),
    workers: int | None = typer.Option(None, "--workers", help="DataLoader worker processes."),
    eval_every: int | None = typer.Option(None, "--eval-every", help="Validate every N epochs."),
    stop_at_step: int | None = typer.Option(
        None, "--stop-at-step", help="End this session after global step N (resume later)."
    ),
) -> None:
    """Fine-tune a classifier from a SimMIM encoder (or from scratch with --pretrained none).

    Writes OUT/best.pt and OUT/last.pt (resumable), metrics.json, confusion_matrix.png,
    training_curves.png, config.yaml, metrics.csv and TensorBoard events.

    Example: simmim-deploy train classify --data builtin:digits --model vit_nano_patch8_32
    --pretrained runs/pretrain/encoder.safetensors --epochs 30 --labels-per-class 10
    --out runs/classify
    """
    from simmim_deploy.core.config import load_config
    from simmim_deploy.train.classify import ClassifyConfig, run_classify

    overrides = {
        "data": data,
        "model": model,
        "pretrained": pretrained,
        "epochs": epochs,
        "out": str(out) if out is not None else None,
        "img_size": img_size,
        "batch_size": batch_size,
        "accumulation": accumulation,
        "device": device,
        "precision": precision,
        "seed": seed,
        "resume": True if resume else None,
        "mode": mode,
        "labels_per_class": labels_per_class,
        "label_fraction": label_fraction,
        "val_split": val_split,
        "val_data": val_data,
        "base_lr": lr,
        "layer_decay": layer_decay,
        "warmup_epochs": warmup_epochs,
        "weight_decay": weight_decay,
        "drop_path": drop_path,
        "label_smoothing": label_smoothing,
        "mixup": 0.0 if no_mixup else None,
        "cutmix": 0.0 if no_mixup else None,
        "randaug": randaug,
        "reprob": reprob,
        "hflip": hflip,
        "head_norm": head_norm,
        "workers": workers,
        "eval_every": eval_every,
        "stop_at_step": stop_at_step,
    }
    cfg = load_config(ClassifyConfig, config, overrides)
    summary = run_classify(cfg)
    if summary:  # rank 0 only
        state = "done" if summary["completed"] else "stopped early (resume with --resume)"
        skipped = summary["skipped_files"]
        top1 = summary.get("top1")
        score = f"best val top-1 {top1:.2f}% (epoch {summary['best_epoch']})" if top1 else "no val"
        typer.echo(
            f"classify {state}: {score}, {summary['train_images']['total']} training images, "
            f"{skipped} file(s) skipped; checkpoint: {summary['checkpoint']}"
        )
