"""SimMIM pre-training: :class:`PretrainConfig` -> :func:`run_pretrain` -> a run folder.

Outputs in ``config.out``:

- ``checkpoints/last.pt``: resumable state (see :mod:`simmim_deploy.train.checkpointing`).
- ``encoder.safetensors``: the pre-trained backbone as a timm state dict (``save_encoder``).
- ``config.yaml``: the resolved config; ``metrics.csv`` and ``tensorboard/``: the curves.
- ``metrics.json``: the run summary (:class:`~simmim_deploy.core.run_summary.RunSummary`).
- ``reconstructions/epoch_NNN.png``: original | masked | reconstruction, de-normalised.
- ``skipped.txt``: unreadable files (only when some were skipped).

Learning rates are per 512 images, turned into the run's by ``lr_scaling`` (linear at an
effective batch of 512 and more, as the official code; see :mod:`simmim_deploy.train.lr_rule`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from simmim_deploy.core.config import config_to_dict, flag_for, option, redefault
from simmim_deploy.core.errors import UserError
from simmim_deploy.core.run_summary import RunSummary
from simmim_deploy.train.run_options import RunOptions

EPOCHS, WARMUP_EPOCHS = 10, 1.0


@dataclasses.dataclass(frozen=True)
class PretrainConfig(RunOptions):
    """Everything ``simmim-deploy train pretrain`` needs (help text in each field's metadata).

    Learning rates (``lr``, ``warmup_lr``, ``min_lr``) are per 512 images; ``milestones`` (step
    schedule) are in epochs; ``batch_size`` is per process.
    """

    data: str = option("builtin:mnist", "Image folder (recursive) or builtin:mnist|digits|photos.")
    out: str = option("runs/pretrain", "Run folder (checkpoints/, encoder.safetensors, ...).")
    model: str = option("vit_micro_patch8_64", "timm model name of the encoder.")
    img_size: int | None = option(None, "Input side in pixels (default: the model's).")
    window_size: int | None = option(None, "Swin window size (default: the model's).")
    lr: float = redefault(RunOptions, "lr", 2e-4)
    save_every_steps: int = redefault(RunOptions, "save_every_steps", 500)
    schedule: Literal["cosine", "step"] = option("cosine", "LR schedule after the warmup.")
    milestones: tuple[int, ...] = option(
        (), "Epochs at which the step schedule multiplies the LR by --gamma (comma list)."
    )
    gamma: float = option(0.1, "Step-schedule factor.")
    weight_decay: float = option(0.05, "AdamW weight decay.")
    betas: tuple[float, ...] = option((0.9, 0.999), "AdamW betas (two numbers).", cli=False)
    eps: float = option(1e-8, "AdamW epsilon.", cli=False)
    mask_ratio: float = option(0.6, "Share of the mask cells masked.")
    mask_patch_size: int | None = option(
        None,
        "Side of a masked cell in pixels (default: the paper's 32, at most a quarter of the "
        "image side: 16 at 64 px, 8 at 32 px).",
    )
    loss_type: Literal["l1", "l2"] = option("l1", "Reconstruction loss on masked pixels.")
    norm_target: bool = option(False, "Per-patch normalised target instead of the input.")
    drop_path: float | None = option(None, "Stochastic depth (default 0.1 ViT, 0.0 Swin).")
    init_from: str | None = option(None, "Start from this SimMIM checkpoint (weights only).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mask_patch_size is not None and self.mask_patch_size < 1:
            flag = flag_for(self, "mask_patch_size")
            raise UserError(f"{flag} must be at least 1, got {self.mask_patch_size}")
        if self.img_size is not None and self.img_size < 1:
            raise UserError(f"{flag_for(self, 'img_size')} must be positive, got {self.img_size}")
        if not 0.0 < self.mask_ratio < 1.0:
            flag = flag_for(self, "mask_ratio")
            raise UserError(f"{flag} must be strictly between 0 and 1, got {self.mask_ratio}")
        if self.weight_decay < 0:
            raise UserError(
                f"{flag_for(self, 'weight_decay')} must be >= 0, got {self.weight_decay}"
            )
        if len(self.betas) != 2:
            raise UserError(f"recipe key betas must be two numbers, got {list(self.betas)}")
        if self.schedule == "step" and not self.milestones:
            raise UserError(
                f"{flag_for(self, 'schedule')} step needs {flag_for(self, 'milestones')} (epochs)"
            )
        if self.schedule == "cosine" and self.milestones:
            raise UserError(
                f"{flag_for(self, 'milestones')} only apply to {flag_for(self, 'schedule')} step"
            )
        end = self.epochs if self.epochs is not None else float("inf")
        bad = [m for m in self.milestones if not (self.warmup_epochs or 0) <= m < end]
        if bad:
            warmup_flag, epochs_flag = flag_for(self, "warmup_epochs"), flag_for(self, "epochs")
            raise UserError(
                f"{flag_for(self, 'milestones')} {bad} must lie in [{warmup_flag}, {epochs_flag})"
            )
        if self.drop_path is not None and not 0.0 <= self.drop_path < 1.0:
            raise UserError(
                f"{flag_for(self, 'drop_path')} must lie in [0, 1), got {self.drop_path}"
            )
        if self.init_from is not None and not Path(self.init_from).is_file():
            raise UserError(f"{flag_for(self, 'init_from')} checkpoint not found: {self.init_from}")


def run_pretrain(config: PretrainConfig) -> RunSummary | None:
    """Pre-train a SimMIM model as ``config`` says; returns the run summary it wrote to
    ``OUT/metrics.json`` (``encoder``, ``final_loss``, ``rank_digests``...).

    Works in one process or under ``torchrun`` (each rank calls it; rank 0 writes; None on the
    other ranks).

    Raises:
        UserError: bad data path, unknown model, out folder holding another run, NaN loss...
    """
    # Cheap checks first (no torch import yet): a typo in --data or --out fails in a second.
    from simmim_deploy.data.aug_presets import resolve_aug
    from simmim_deploy.data.builtin import resolve_data_arg
    from simmim_deploy.data.images import SkipLog
    from simmim_deploy.train.checkpointing import check_run_folder

    out = Path(config.out)
    check_run_folder(out, config.resume)
    source = resolve_data_arg(config.data)
    aug, aug_why = resolve_aug(config.aug)  # no boxes: auto is natural
    config = dataclasses.replace(config, aug=aug)

    from simmim_deploy.train import distributed as dist
    from simmim_deploy.train.driver import prepare_run
    from simmim_deploy.train.engine import fit, seed_everything

    seed_everything(config.seed)  # identical initial weights on every rank
    model, dataset, skip_log = _build(config, source, SkipLog(out))
    run = prepare_run(
        dataclasses.replace(
            config, img_size=model.img_size, mask_patch_size=dataset.mask_generator.mask_patch_size
        ),
        config.warmup_epochs,
        model,
        len(dataset),
        base_epochs=EPOCHS,
        base_warmup=WARMUP_EPOCHS,
        weight_decay=config.weight_decay,
        betas=(float(config.betas[0]), float(config.betas[1])),
        eps=config.eps,
        kind=config.schedule,
        milestones=config.milestones,
        gamma=config.gamma,
    )
    resolved, opt = run.config, run.optimization
    task = _task(config, model, dataset)
    meta = {
        "kind": "simmim-pretrain",
        "model_name": config.model,
        "img_size": model.img_size,
        "config": config_to_dict(resolved),
    }
    result = fit(
        model, task, dataset, run.engine, opt.optimizer, opt.scheduler, out, meta=meta,
        description="pretrain", notes=(f"aug {aug} ({aug_why})", *run.notes),
    )  # fmt: skip
    dist.barrier()  # every rank's skip records are on disk before rank 0 merges them
    summary = None
    if result.dist.is_main:
        skipped = skip_log.finalize()
        summary = _finish(out, config, model, result, skipped, opt.record(), len(dataset))
    dist.barrier()
    dist.teardown()
    return summary


def _finish(out: Path, config: PretrainConfig, model: Any, result: Any, skipped: int,
            lr_plan: dict[str, Any], images: int) -> RunSummary:  # fmt: skip
    """Write ``encoder.safetensors`` and ``metrics.json``; the run summary (rank 0)."""
    from simmim_deploy.models.checkpoint import save_encoder

    encoder = save_encoder(model, out / "encoder.safetensors", _encoder_meta(model, config))
    summary = RunSummary(
        command="pretrain",
        out=str(out),
        completed=not result.stopped_early,
        global_step=result.global_step,
        epochs_completed=result.epochs_completed,
        images_seen=result.images_seen,
        precision=result.precision,
        lr_plan=lr_plan,
        model=config.model,
        data=config.data,
        train_images=images,
        skipped_files=skipped,
        final_loss=result.last_loss,
        encoder=str(encoder),
        rank_digests=tuple(result.rank_digests),
    )
    summary.write()
    return summary


def _build(config: PretrainConfig, source: Any, skip_log: Any) -> tuple[Any, Any, Any]:
    from simmim_deploy.data.aug_presets import resolve_aug
    from simmim_deploy.data.masking import MaskGenerator, default_mask_patch_size
    from simmim_deploy.data.pretrain_dataset import PretrainDataset
    from simmim_deploy.data.transforms import PretrainTransform
    from simmim_deploy.models.checkpoint import load_simmim_checkpoint_for_init
    from simmim_deploy.models.simmim import build_simmim

    timm_kwargs = {"window_size": config.window_size} if config.window_size else {}
    model = build_simmim(
        config.model, img_size=config.img_size, drop_path_rate=config.drop_path, **timm_kwargs
    )
    if config.init_from:
        load_simmim_checkpoint_for_init(model, config.init_from)
    cell = config.mask_patch_size or default_mask_patch_size(model.img_size, model.patch_size)
    masks = MaskGenerator(model.img_size, cell, model.patch_size, config.mask_ratio)
    aug = resolve_aug(config.aug)[0]  # idempotent: run_pretrain has resolved it already
    transform = PretrainTransform(model.data_config, model.img_size, aug=aug)
    dataset = PretrainDataset(source, transform, masks, seed=config.seed, skip_log=skip_log)
    return model, dataset, skip_log


def _task(config: PretrainConfig, model: Any, dataset: Any) -> Any:
    from simmim_deploy.train.pretrain_task import SimMIMTask

    return SimMIMTask(
        patch_size=model.patch_size,
        loss_type=config.loss_type,
        norm_target=config.norm_target,
        preview=dataset,
        mean=tuple(model.data_config["mean"]),
        std=tuple(model.data_config["std"]),
    )


def _encoder_meta(model: Any, config: PretrainConfig) -> dict[str, Any]:
    return {
        "model_name": config.model,
        "img_size": model.img_size,
        "patch_size": model.patch_size,
        "source": "simmim-deploy train pretrain",
        "window_size": config.window_size,
        "mean": list(model.data_config["mean"]),
        "std": list(model.data_config["std"]),
    }
