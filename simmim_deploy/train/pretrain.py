"""SimMIM pre-training: :class:`PretrainConfig` -> :func:`run_pretrain` -> a run folder.

Outputs in ``config.out``:

- ``checkpoints/last.pt``: resumable state (see :mod:`simmim_deploy.train.checkpointing`).
- ``encoder.safetensors``: the pre-trained backbone as a timm state dict (``save_encoder``).
- ``config.yaml``: the resolved config; ``metrics.csv`` and ``tensorboard/``: the curves.
- ``reconstructions/epoch_NNN.png``: original | masked | reconstruction, de-normalised.
- ``skipped.txt``: unreadable files (only when some were skipped).

Learning rates are per 512 images and scaled by ``batch_size * world_size * accumulation / 512``
(base, warmup and minimum LR alike, as the official code).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from simmim_deploy.core.config import config_to_dict, save_config
from simmim_deploy.core.errors import UserError


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Everything ``simmim-deploy train pretrain`` needs (YAML recipe + CLI overrides).

    Learning rates (``base_lr``, ``warmup_lr``, ``min_lr``) are per 512 images. ``milestones``
    (step schedule) are in epochs. ``img_size``/``drop_path``/``window_size`` None = the
    model's (family's) default. ``batch_size`` is per process.
    """

    data: str = "builtin:mnist"
    model: str = "vit_micro_patch8_64"
    img_size: int | None = None
    window_size: int | None = None
    epochs: int = 10
    batch_size: int = 64
    accumulation: int = 1
    base_lr: float = 2e-4
    warmup_epochs: int = 1
    warmup_lr: float = 5e-7
    min_lr: float = 5e-6
    schedule: Literal["cosine", "step"] = "cosine"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    weight_decay: float = 0.05
    betas: tuple[float, ...] = (0.9, 0.999)
    eps: float = 1e-8
    clip_grad: float | None = 5.0
    mask_ratio: float = 0.6
    mask_patch_size: int = 32
    loss_type: Literal["l1", "l2"] = "l1"
    norm_target: bool = False
    drop_path: float | None = None
    init_from: str | None = None
    device: str = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    compile: bool = False
    seed: int = 0
    num_workers: int = 2
    save_every_steps: int = 500
    log_every_steps: int = 10
    resume: bool = False
    stop_at_step: int | None = None
    out: str = "runs/pretrain"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "accumulation", "mask_patch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.img_size is not None and self.img_size < 1:
            raise UserError(f"img_size must be positive, got {self.img_size}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise UserError(
                f"warmup_epochs ({self.warmup_epochs}) must lie between 0 and epochs "
                f"({self.epochs}): lower warmup_epochs"
            )
        if not 0.0 < self.mask_ratio < 1.0:
            raise UserError(f"mask_ratio must be strictly between 0 and 1, got {self.mask_ratio}")
        for name in ("base_lr", "warmup_lr", "min_lr", "weight_decay"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")
        if len(self.betas) != 2:
            raise UserError(f"betas must be two numbers, got {list(self.betas)}")
        if self.schedule == "step" and not self.milestones:
            raise UserError("schedule 'step' needs milestones (epochs), e.g. milestones: [700]")
        if self.schedule == "cosine" and self.milestones:
            raise UserError("milestones only apply to schedule 'step'; remove them or set it")
        bad = [m for m in self.milestones if not self.warmup_epochs <= m < self.epochs]
        if bad:
            raise UserError(f"milestones {bad} must lie in [warmup_epochs, epochs)")
        if self.drop_path is not None and not 0.0 <= self.drop_path < 1.0:
            raise UserError(f"drop_path must lie in [0, 1), got {self.drop_path}")
        if self.init_from is not None and not Path(self.init_from).is_file():
            raise UserError(f"init_from checkpoint not found: {self.init_from}")


def run_pretrain(config: PretrainConfig) -> dict[str, Any]:
    """Pre-train a SimMIM model as ``config`` says; returns the run summary.

    Works in one process or under ``torchrun`` (each rank calls it; rank 0 writes).

    Returns:
        ``{"out", "global_step", "epochs_completed", "images_seen", "final_loss", "skipped",
        "skipped_list", "encoder", "stopped_early", "rank_digests"}`` on rank 0, ``{}`` on
        the other ranks.

    Raises:
        UserError: bad data path, unknown model, out folder holding another run, NaN loss...
    """
    # Cheap checks first (no torch import yet): a typo in --data or --out fails in a second.
    from simmim_deploy.data.builtin import resolve_data_arg
    from simmim_deploy.data.images import SkipLog

    out = Path(config.out)
    if (out / "checkpoints" / "last.pt").is_file() and not config.resume:
        raise UserError(
            f"{out} already holds a run: pass --resume to continue it or choose another --out"
        )
    source = resolve_data_arg(config.data)

    from simmim_deploy.models.checkpoint import save_encoder
    from simmim_deploy.train import distributed as dist
    from simmim_deploy.train.engine import fit, seed_everything

    seed_everything(config.seed)  # identical initial weights on every rank
    model, dataset, skip_log = _build(config, source, SkipLog(out))
    resolved = dataclasses.replace(config, img_size=model.img_size)
    engine_cfg, optimizer, scheduler = _optimisation(config, model, len(dataset))
    if int(_env("RANK", "0")) == 0:  # the process group starts inside fit
        save_config(resolved, out / "config.yaml")
    task = _task(config, model, dataset)
    meta = {
        "kind": "simmim-pretrain",
        "model_name": config.model,
        "img_size": model.img_size,
        "config": config_to_dict(resolved),
    }
    result = fit(
        model,
        task,
        dataset,
        engine_cfg,
        optimizer,
        scheduler,
        out,
        meta=meta,
        description="pretrain",
    )
    dist.barrier()  # every rank's skip records are on disk before rank 0 merges them
    summary: dict[str, Any] = {}
    if result.dist.is_main:
        encoder_path = save_encoder(
            model, out / "encoder.safetensors", _encoder_meta(model, config)
        )
        skipped = skip_log.finalize()
        summary = {
            "out": str(out),
            "global_step": result.global_step,
            "epochs_completed": result.epochs_completed,
            "images_seen": result.images_seen,
            "final_loss": result.last_loss,
            "skipped": skipped,
            "skipped_list": str(out / "skipped.txt") if skipped else None,
            "encoder": str(encoder_path),
            "stopped_early": result.stopped_early,
            "rank_digests": result.rank_digests,
        }
    dist.barrier()
    dist.teardown()
    return summary


def _env(name: str, default: str) -> str:
    import os

    return os.environ.get(name, default)


def _build(config: PretrainConfig, source: Any, skip_log: Any) -> tuple[Any, Any, Any]:
    from simmim_deploy.data.masking import MaskGenerator
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
    masks = MaskGenerator(
        model.img_size, config.mask_patch_size, model.patch_size, config.mask_ratio
    )
    transform = PretrainTransform(model.data_config, model.img_size)
    dataset = PretrainDataset(source, transform, masks, seed=config.seed, skip_log=skip_log)
    return model, dataset, skip_log


def _optimisation(config: PretrainConfig, model: Any, num_samples: int) -> tuple[Any, Any, Any]:
    from simmim_deploy.train.engine import EngineConfig, steps_per_epoch
    from simmim_deploy.train.optim import build_optimizer, scale_lr
    from simmim_deploy.train.schedule import build_scheduler

    engine_cfg = EngineConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        accumulation=config.accumulation,
        device=config.device,
        precision=config.precision,
        compile=config.compile,
        clip_grad=config.clip_grad,
        num_workers=config.num_workers,
        seed=config.seed,
        save_every_steps=config.save_every_steps,
        log_every_steps=config.log_every_steps,
        resume=config.resume,
        stop_at_step=config.stop_at_step,
    )
    world = int(_env("WORLD_SIZE", "1"))
    steps = steps_per_epoch(num_samples, engine_cfg, world)

    def scaled(lr: float) -> float:
        return scale_lr(lr, config.batch_size, world, config.accumulation)

    betas = (float(config.betas[0]), float(config.betas[1]))
    optimizer = build_optimizer(
        model, scaled(config.base_lr), config.weight_decay, betas, config.eps, None
    )
    scheduler = build_scheduler(
        optimizer,
        total_steps=steps * config.epochs,
        warmup_steps=steps * config.warmup_epochs,
        kind=config.schedule,
        warmup_lr=scaled(config.warmup_lr),
        min_lr=scaled(config.min_lr),
        milestones=[m * steps for m in config.milestones],
        gamma=config.gamma,
    )
    return engine_cfg, optimizer, scheduler


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
