"""The ``train classify`` config: one frozen dataclass, validated on construction.

Defaults are the official SimMIM fine-tuning recipe (SPEC section 2). Options left at ``None``
take the default of the chosen ``mode`` (and model family), listed in :data:`MODE_DEFAULTS` and
resolved once by :func:`resolve_defaults`; the resolved config is what ``config.yaml`` records.
An option given explicitly is never changed: conflicting options are refused instead.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from simmim_deploy.core.errors import UserError

Mode = Literal["full", "linear"]

OFFICIAL_RANDAUG = "rand-m9-mstd0.5-inc1"

# Per mode: the official full fine-tune; the linear probe of MAE/BEiT (plain crops, no mixup,
# no regularisation, a frozen encoder, so no drop path and no layer decay; MAE's parameter-free
# BatchNorm before the head, since frozen features differ in scale per dimension).
MODE_DEFAULTS: dict[str, dict[str, Any]] = {
    "full": dict(
        base_lr=1.25e-3,
        weight_decay=0.05,
        label_smoothing=0.1,
        mixup=0.8,
        cutmix=1.0,
        randaug=OFFICIAL_RANDAUG,
        reprob=0.25,
        drop_path=0.1,
        head_norm=False,
    ),
    "linear": dict(
        base_lr=1e-2,
        weight_decay=0.0,
        label_smoothing=0.0,
        mixup=0.0,
        cutmix=0.0,
        randaug="none",
        reprob=0.0,
        drop_path=0.0,
        head_norm=True,
    ),
}
# Layer-wise LR decay of the official recipe: ViT-B 0.65, Swin-B (100 ep) 0.9.
LAYER_DECAY = {"vit": 0.65, "swin": 0.9}


@dataclasses.dataclass(frozen=True)
class ClassifyConfig:
    """Everything ``simmim-deploy train classify`` needs.

    Attributes:
        data: ``builtin:mnist|digits``, an ImageFolder tree, or a tree with train/ and val/.
        out: run folder (best.pt, last.pt, metrics.json, config.yaml, plots, tensorboard/).
        model: timm model name of the encoder.
        pretrained: ``encoder.safetensors``, an official SimMIM ``.pth``, a timm state dict,
            or ``none`` (random initialisation, the from-scratch baseline).
        val_data: separate validation data; val_split: carve a stratified fraction of ``data``.
        split_seed: seed of ``val_split`` (apart from ``seed``, so seeds share one val set).
        img_size: input side (None: the model's default).
        model_kwargs: extra ``timm.create_model`` kwargs (e.g. ``{window_size: 7}``).
        mode: ``full`` fine-tune (layer-wise LR decay) or ``linear`` probe (frozen encoder).
        epochs, batch_size (per process), accumulation: the budget.
        base_lr: peak LR per 512 images (scaled by batch x processes x accumulation / 512).
        absolute_lr: peak LR as is, instead of ``base_lr`` scaling (give one of them).
        warmup_epochs: None: 20 as official, at most 20% of the run.
        warmup_lr, min_lr: per 512 images (official 2.5e-7).
        layer_decay: None: 0.65 ViT, 0.9 Swin (full mode only).
        weight_decay, drop_path, label_smoothing, mixup, cutmix, randaug (``none`` disables),
        reprob: regularisation; None takes the mode's default (:data:`MODE_DEFAULTS`).
        head_norm: BatchNorm1d without affine parameters before the linear head (MAE's linear
            probe); None: on for ``linear``, off for ``full``.
        mixup_prob, mixup_switch_prob: how often mixup/cutmix apply and switch.
        hflip: horizontal flip probability (0 for data where mirroring changes the class).
        crop_scale_min: lower area bound of the RandomResizedCrop (upper bound 1).
        clip_grad: max grad norm (official 5.0), None for none.
        labels_per_class / label_fraction: low-label study (stratified, seeded by ``seed``).
        eval_every: validate every N epochs (and after the last one).
        device, precision, seed, workers, compile, resume, save_every_steps, stop_at_step,
        progress: how to run (see the engine).
    """

    data: str
    out: str
    model: str = "vit_micro_patch8_64"
    pretrained: str = "none"
    val_data: str | None = None
    val_split: float | None = None
    split_seed: int = 0
    img_size: int | None = None
    model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    mode: Mode = "full"
    epochs: int = 100
    batch_size: int = 64
    accumulation: int = 1
    base_lr: float | None = None
    absolute_lr: float | None = None
    warmup_epochs: float | None = None
    warmup_lr: float = 2.5e-7
    min_lr: float = 2.5e-7
    layer_decay: float | None = None
    weight_decay: float | None = None
    drop_path: float | None = None
    label_smoothing: float | None = None
    mixup: float | None = None
    cutmix: float | None = None
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    randaug: str | None = None
    reprob: float | None = None
    head_norm: bool | None = None
    hflip: float = 0.5
    crop_scale_min: float = 0.08
    clip_grad: float | None = 5.0
    labels_per_class: int | None = None
    label_fraction: float | None = None
    eval_every: int = 1
    eval_batch_size: int | None = None
    device: str = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    seed: int = 0
    workers: int = 2
    compile: bool = False
    resume: bool = False
    save_every_steps: int = 0
    stop_at_step: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODE_DEFAULTS:
            raise UserError(f"mode must be 'full' or 'linear', got {self.mode!r}")
        if self.labels_per_class is not None and self.label_fraction is not None:
            raise UserError("give either --labels-per-class or --label-fraction, not both")
        if self.labels_per_class is not None and self.labels_per_class < 1:
            raise UserError(f"labels_per_class must be >= 1, got {self.labels_per_class}")
        if self.label_fraction is not None and not 0.0 < self.label_fraction <= 1.0:
            raise UserError(f"label_fraction must be in (0, 1], got {self.label_fraction}")
        if self.val_data is not None and self.val_split is not None:
            raise UserError("give either --val-data or --val-split, not both")
        if self.base_lr is not None and self.absolute_lr is not None:
            raise UserError("give either base_lr (per 512 images) or absolute_lr, not both")
        if self.mode == "linear" and self.layer_decay is not None:
            raise UserError("--layer-decay applies to --mode full only (linear: frozen encoder)")
        if self.mode == "linear" and self.drop_path:
            raise UserError("--drop-path does nothing to a frozen encoder (--mode linear)")
        for name in ("epochs", "batch_size", "accumulation", "eval_every"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup_epochs is not None and not 0 <= self.warmup_epochs < self.epochs:
            raise UserError(
                f"warmup_epochs ({self.warmup_epochs}) must be in [0, epochs={self.epochs})"
            )
        for name in ("mixup", "cutmix", "reprob", "label_smoothing", "drop_path", "weight_decay"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise UserError(f"{name} must be >= 0, got {value}")
        if not 0.0 < self.crop_scale_min <= 1.0:
            raise UserError(f"crop_scale_min must be in (0, 1], got {self.crop_scale_min}")
        if self.uses_mixup and self.batch_size % 2:
            raise UserError(f"mixup/cutmix need an even --batch-size, got {self.batch_size}")

    @property
    def uses_mixup(self) -> bool:
        """Mixup or CutMix is on (explicitly, or by the mode's default)."""
        d = MODE_DEFAULTS[self.mode]
        mixup = d["mixup"] if self.mixup is None else self.mixup
        cutmix = d["cutmix"] if self.cutmix is None else self.cutmix
        return (mixup > 0 or cutmix > 0) and self.mixup_prob > 0


def model_family(model_name: str) -> str:
    """``swin`` or ``vit`` (ViT-style: vit, deit, beit, eva), for family defaults."""
    return "swin" if model_name.startswith("swin") else "vit"


def resolve_defaults(config: ClassifyConfig) -> ClassifyConfig:
    """Fill every ``None`` option with its mode/family default; explicit values stay."""
    values: dict[str, Any] = {}
    for key, default in MODE_DEFAULTS[config.mode].items():
        if getattr(config, key) is None and not (
            key == "base_lr" and config.absolute_lr is not None
        ):
            values[key] = default
    if config.mode == "full" and config.layer_decay is None:
        values["layer_decay"] = LAYER_DECAY[model_family(config.model)]
    if config.warmup_epochs is None:
        values["warmup_epochs"] = float(min(20.0, 0.2 * config.epochs))
    return dataclasses.replace(config, **values)
