"""``simmim-deploy train pretrain``: SimMIM pre-training of a timm encoder."""

from __future__ import annotations

from pathlib import Path

import typer


def pretrain(
    data: str | None = typer.Option(
        None, "--data", help="Image folder (recursive) or builtin:NAME (mnist, digits, photos)."
    ),
    model: str | None = typer.Option(None, "--model", help="timm model name."),
    img_size: int | None = typer.Option(None, "--img-size", help="Input side in pixels."),
    epochs: int | None = typer.Option(None, "--epochs", help="Number of epochs."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Images per step per process."
    ),
    out: Path | None = typer.Option(None, "--out", help="Run folder to write."),
    config: Path | None = typer.Option(
        None, "--config", help="Recipe YAML (train/*.yaml); options given here override it."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoints/last.pt."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda or auto."),
    precision: str | None = typer.Option(None, "--precision", help="fp32, bf16 or fp16."),
    mask_ratio: float | None = typer.Option(None, "--mask-ratio", help="Masked fraction."),
    mask_patch_size: int | None = typer.Option(
        None, "--mask-patch-size", help="Side of a masked cell in pixels."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Random seed."),
    lr: float | None = typer.Option(None, "--lr", help="Base learning rate per 512 images."),
    accumulation: int | None = typer.Option(
        None, "--accumulation", help="Micro-batches per optimizer step."
    ),
    workers: int | None = typer.Option(None, "--workers", help="DataLoader worker processes."),
    compile: bool | None = typer.Option(None, "--compile/--no-compile", help="Use torch.compile."),
    save_every: int | None = typer.Option(
        None, "--save-every", help="Also save last.pt every N optimizer steps (0: epochs only)."
    ),
    stop_at_step: int | None = typer.Option(
        None, "--stop-at-step", help="End this session after global step N (resume later)."
    ),
) -> None:
    """Pre-train an encoder with SimMIM (masked image modelling) on a folder or built-in data.

    Writes OUT/checkpoints/last.pt, OUT/encoder.safetensors (timm backbone), config.yaml,
    metrics.csv, TensorBoard events and reconstructions/epoch_*.png. Multi-GPU: launch the same
    command with torchrun.

    Example: simmim-deploy train pretrain --data builtin:mnist --model vit_micro_patch8_64
    --img-size 64 --epochs 2 --batch-size 64 --out runs/pretrain
    """
    from simmim_deploy.core.config import load_config
    from simmim_deploy.train.pretrain import PretrainConfig, run_pretrain

    overrides = {
        "data": data,
        "model": model,
        "img_size": img_size,
        "epochs": epochs,
        "batch_size": batch_size,
        "out": str(out) if out is not None else None,
        "resume": True if resume else None,
        "device": device,
        "precision": precision,
        "mask_ratio": mask_ratio,
        "mask_patch_size": mask_patch_size,
        "seed": seed,
        "base_lr": lr,
        "accumulation": accumulation,
        "num_workers": workers,
        "compile": compile,
        "save_every_steps": save_every,
        "stop_at_step": stop_at_step,
    }
    cfg = load_config(PretrainConfig, config, overrides)
    summary = run_pretrain(cfg)
    if summary:  # rank 0 only
        skipped = summary["skipped"]
        where = f" (list: {summary['skipped_list']})" if skipped else ""
        state = "stopped early (resume with --resume)" if summary["stopped_early"] else "done"
        typer.echo(
            f"pretrain {state}: {summary['images_seen']} images seen in "
            f"{summary['global_step']} steps, final loss {summary['final_loss']:.4f}, "
            f"{skipped} file(s) skipped{where}; encoder: {summary['encoder']}"
        )
        digests = summary["rank_digests"]
        if len(digests) > 1:
            typer.echo(f"ranks: {len(digests)}, final weights sha256 per rank: {' '.join(digests)}")
