"""The ``train classify`` config: one frozen dataclass, validated on construction.

Defaults are the official SimMIM fine-tuning recipe. Options left at ``None``
take the default of the chosen ``mode`` (and model family), listed in :data:`MODE_DEFAULTS` and
resolved once by :func:`resolve_defaults`; the resolved config is what ``config.yaml`` records.
An option given explicitly is never changed: conflicting options are refused instead.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from simmim_deploy.core.config import option, redefault
from simmim_deploy.core.errors import UserError
from simmim_deploy.core.families import model_family
from simmim_deploy.train.budget import SMALL_DATA
from simmim_deploy.train.lr_rule import cap_warmup
from simmim_deploy.train.run_options import FinetuneOptions, RunOptions

Mode = Literal["full", "linear"]

OFFICIAL_RANDAUG = "rand-m9-mstd0.5-inc1"

# Per mode: the official full fine-tune; the linear probe of MAE/BEiT (plain crops, no mixup,
# no regularisation, a frozen encoder, so no drop path and no layer decay; MAE's parameter-free
# BatchNorm before the head, since frozen features differ in scale per dimension).
MODE_DEFAULTS: dict[str, dict[str, Any]] = {
    "full": dict(
        lr=1.25e-3,
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
        lr=1e-2,
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
# Under SMALL_DATA labelled images a full fine-tune keeps the official LR, layer decay and
# label smoothing but drops the regularisers made for 1.28M images: mixup/cutmix (DeiT/BEiT use
# them over 300 epochs of ImageNet), random erasing, RandAugment and 8 %-area crops: a run of a
# few hundred steps on a few hundred images underfits (train loss near chance), so every
# distortion costs accuracy. Measured (README, small data; 100 digits, seed 0, held-out top-1):
# the ImageNet set 12 %; without mixup/cutmix/erasing, with RandAugment m6: 19 %; without
# RandAugment too: 34 %.
SMALL_DATA_FULL: dict[str, Any] = dict(
    mixup=0.0, cutmix=0.0, randaug="none", reprob=0.0, crop_scale_min=0.35
)
# Small images (median short side under LOW_RES px, as stored): crops of at least 60 % of the
# area. A 35 % crop of a 28 px digit keeps ~17 px of it, often not enough to tell the class, and
# on a few hundred images those mislabelled views are not averaged out (CIFAR-style recipes crop
# mildly for the same reason). Measured (README, small data; 3 seeds, held-out top-1): 100 MNIST
# digits (28 px) from scratch 33.1 -> 36.3 %; the 64 px photo tiles lose with it (scratch
# 81.7 -> 75.1 %, SimMIM init 87.0 -> 84.7 %), so images from LOW_RES px on keep 0.35.
LOW_RES, LOW_RES_CROP = 48, 0.6
# A pre-trained encoder fine-tuned on a small set, under layer-wise decay (0.65: the lower blocks
# learn at a few % of the peak), wants twice the recipe's peak LR; a random one (no decay) does
# not. Measured (README, small data; 3 seeds each, held-out top-1): SimMIM init, 144 photo tiles
# 79.4 -> 87.0 %, 100 digits 39.1 -> 43.6 %; from scratch the same LR loses (81.7 -> 72.5 %,
# 33.1 -> 30.2 %).
SMALL_DATA_PRETRAINED_LR = 2.5e-3  # per 512 images (a floor at small batches)
# Layer-wise LR decay of the official recipe: ViT-B 0.65, Swin-B (100 ep) 0.9.
LAYER_DECAY = {"vit": 0.65, "swin": 0.9}
EPOCHS, WARMUP_EPOCHS = 100, 20.0  # official


@dataclasses.dataclass(frozen=True)
class ClassifyConfig(FinetuneOptions):
    """Everything ``simmim-deploy train classify`` needs (help text in each field's metadata).

    Options left at ``None`` take the default of ``mode`` (:data:`MODE_DEFAULTS`) or of the
    model family, filled once by :func:`resolve_defaults`.
    """

    # A ViT from scratch on a few hundred images is still learning after 1,200 steps (train loss
    # well above its floor): measured (README, small data; 100 digits at batch 16, held-out
    # top-1, 3 seeds) 100 epochs 36.3 %, 200 epochs 55.4 %, 400 epochs 62.8 %.
    AUTO_LENGTH: ClassVar[tuple[int, int]] = (2400, 400)

    data: str = option(help="builtin:mnist|digits, ROOT/<class>/*, or ROOT/{train,val}/<class>/*.")
    out: str = option(help="Run folder (best.pt, last.pt, metrics.json, config.yaml, plots).")
    model: str = option("vit_micro_patch8_64", "timm model name of the encoder.")
    pretrained: str = option(
        "none", "encoder.safetensors, official SimMIM .pth, timm state dict, or none (scratch)."
    )
    val_data: str | None = option(None, "Separate validation data.")
    val_split: float | None = option(
        None, "Hold out this stratified fraction of --data for validation."
    )
    split_seed: int = option(0, "Seed of --val-split (apart from --seed: seeds share a val set).")
    img_size: int | None = option(None, "Input side in pixels (default: the model's).")
    model_kwargs: dict[str, Any] = option(
        help="Extra timm.create_model kwargs, e.g. {window_size: 7}.",
        cli=False,
        default_factory=dict,
    )
    mode: Mode = option("full", "full fine-tune (layer-wise LR decay) or linear probe.")
    warmup_lr: float = redefault(RunOptions, "warmup_lr", 2.5e-7)
    min_lr: float = redefault(RunOptions, "min_lr", 2.5e-7)
    layer_decay: float | None = option(
        None, "Layer-wise LR decay (default 0.65 ViT, 0.9 Swin, 1 = none from scratch; full mode)."
    )
    weight_decay: float | None = option(None, "AdamW weight decay (default: the mode's).")
    drop_path: float | None = option(None, "Stochastic depth (default: the mode's).")
    label_smoothing: float | None = option(None, "Label smoothing (official 0.1).")
    mixup: float | None = option(None, "Mixup alpha (official 0.8; 0 switches it off).")
    cutmix: float | None = option(None, "CutMix alpha (official 1.0; 0 switches it off).")
    mixup_prob: float = option(1.0, "Probability that mixup/cutmix applies to a batch.")
    mixup_switch_prob: float = option(0.5, "Probability of cutmix instead of mixup.")
    randaug: str | None = option(None, "timm RandAugment string, or none.")
    reprob: float | None = option(None, "Random erasing probability (official 0.25).")
    head_norm: bool | None = option(
        None, "BatchNorm (no affine) before the head, as MAE's linear probe (default: linear)."
    )
    hflip: float | None = option(
        None, "Horizontal flip probability (default: the --aug preset's; natural 0.5, none 0)."
    )
    crop_scale_min: float | None = option(
        None,
        "Lower area bound of the RandomResizedCrop (default 0.08; on small data 0.35, or 0.6 for "
        "images under 48 px).",
    )
    labels_per_class: int | None = option(None, "Keep K labelled training images per class.")
    label_fraction: float | None = option(None, "Keep this fraction of each class for training.")
    eval_batch_size: int | None = option(None, "Validation batch (default: 2 x --batch-size).")

    def __post_init__(self) -> None:
        super().__post_init__()
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
        if self.mode == "linear" and self.layer_decay is not None:
            raise UserError("--layer-decay applies to --mode full only (linear: frozen encoder)")
        if self.mode == "linear" and self.drop_path:
            raise UserError("--drop-path does nothing to a frozen encoder (--mode linear)")
        for name in ("mixup", "cutmix", "reprob", "label_smoothing", "drop_path", "weight_decay"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise UserError(f"{name} must be >= 0, got {value}")
        if self.crop_scale_min is not None and not 0.0 < self.crop_scale_min <= 1.0:
            raise UserError(f"crop_scale_min must be in (0, 1], got {self.crop_scale_min}")
        if self.uses_mixup and self.batch_size is not None and self.batch_size % 2:
            raise UserError(f"mixup/cutmix need an even --batch-size, got {self.batch_size}")

    @property
    def uses_mixup(self) -> bool:
        """Mixup or CutMix is on (explicitly, or by the mode's default)."""
        d = MODE_DEFAULTS[self.mode]
        mixup = d["mixup"] if self.mixup is None else self.mixup
        cutmix = d["cutmix"] if self.cutmix is None else self.cutmix
        return (mixup > 0 or cutmix > 0) and self.mixup_prob > 0


def default_layer_decay(model: str, pretrained: str) -> float:
    """Layer-wise LR decay of a full fine-tune: the family's (:data:`LAYER_DECAY`) for a
    pre-trained encoder, none (1.0) from scratch.

    The decay (BEiT, Bao et al. 2021; SimMIM's fine-tuning) keeps what pre-training put in the
    lower blocks; a random encoder has nothing to keep, and decaying its LR leaves the patch
    embedding of a 12-block ViT at 0.65^13 = 0.4 % of the head's LR, nearly frozen at random.
    """
    return 1.0 if pretrained == "none" else LAYER_DECAY[model_family(model)]


def small_data_defaults(
    config: ClassifyConfig, num_train: int | None, short_side: int | None = None
) -> dict[str, Any]:
    """The small-data regularisation (:data:`SMALL_DATA_FULL`; milder crops for images under
    :data:`LOW_RES` px, ``short_side`` being the data's median) for options left unset."""
    if config.mode != "full" or num_train is None or num_train >= SMALL_DATA:
        return {}
    table = dict(SMALL_DATA_FULL)
    if short_side is not None and short_side < LOW_RES:
        table["crop_scale_min"] = LOW_RES_CROP
    values = {k: v for k, v in table.items() if getattr(config, k) is None}
    if config.lr is None and config.pretrained != "none":
        values["lr"] = SMALL_DATA_PRETRAINED_LR
    return values


def resolve_defaults(
    config: ClassifyConfig, num_train: int | None = None, short_side: int | None = None
) -> ClassifyConfig:
    """Fill every ``None`` option with its mode/family/data-size default; explicit values stay.

    Args:
        config: the config as given.
        num_train: labelled training images (None: unknown, the official defaults apply).
        short_side: the training images' median short side in pixels (None: unknown).
    """
    values: dict[str, Any] = small_data_defaults(config, num_train, short_side)
    for key, default in MODE_DEFAULTS[config.mode].items():
        if getattr(config, key) is None and key not in values:
            values[key] = default
    if config.crop_scale_min is None and "crop_scale_min" not in values:
        values["crop_scale_min"] = 0.08  # official RandomResizedCrop
    if config.mode == "full" and config.layer_decay is None:
        values["layer_decay"] = default_layer_decay(config.model, config.pretrained)
    if config.warmup_epochs is None and config.epochs is not None:  # else: train.budget
        values["warmup_epochs"] = cap_warmup(WARMUP_EPOCHS, config.epochs)[0]
    return dataclasses.replace(config, **values)
