"""``simmim-deploy train pretrain``: SimMIM pre-training of a timm encoder."""

from __future__ import annotations

import typer

from simmim_deploy.cli.options import config_command
from simmim_deploy.train.pretrain import PretrainConfig
from simmim_deploy.train.run_options import RunOptions

DOC = """Pre-train an encoder with SimMIM (masked image modelling) on a folder or built-in data.

Writes OUT/checkpoints/last.pt, OUT/encoder.safetensors (timm backbone), config.yaml,
metrics.csv, metrics.json (the run summary), TensorBoard events and
reconstructions/epoch_*.png. Multi-GPU: launch the same command with torchrun.

Example: simmim-deploy train pretrain --data builtin:mnist --model vit_micro_patch8_64
--img-size 64 --epochs 2 --batch-size 64 --out runs/pretrain
"""


def _run(cfg: PretrainConfig) -> None:
    from simmim_deploy.train.pretrain import run_pretrain

    summary = run_pretrain(cfg)
    if summary:  # rank 0 only
        skipped = summary.skipped_files
        where = f" (list: {summary.skipped_list})" if skipped else ""
        state = "done" if summary.completed else "stopped early (resume with --resume)"
        typer.echo(
            f"pretrain {state}: {summary.images_seen} images seen in "
            f"{summary.global_step} steps, final loss {summary.final_loss:.4f}, "
            f"{skipped} file(s) skipped{where}; encoder: {summary.encoder}"
        )
        digests = summary.rank_digests
        if len(digests) > 1:
            typer.echo(f"ranks: {len(digests)}, final weights sha256 per rank: {' '.join(digests)}")


pretrain = config_command(PretrainConfig, _run, DOC, shared=RunOptions)
