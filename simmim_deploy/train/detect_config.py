"""The ``train detect`` config: one frozen dataclass, validated on construction.

Defaults follow ViTDet-style fine-tuning of a MIM backbone (AdamW, layer-wise LR decay, drop
path 0.1, warmup then cosine) with an FCOS head. Options left at None
take the family / model default once, in :func:`resolve_defaults`; ``config.yaml`` records the
resolved values. Conflicting options are refused, never rewritten.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from simmim_deploy.core.config import option, redefault
from simmim_deploy.core.errors import UserError
from simmim_deploy.core.families import model_family
from simmim_deploy.train.lr_rule import cap_warmup
from simmim_deploy.train.run_options import FinetuneOptions, RunOptions

# ViTDet fine-tunes ViT-B with layer decay 0.7; Swin FPN detectors use a milder 0.9.
LAYER_DECAY = {"vit": 0.7, "swin": 0.9}
# Per 512 images (used as is below batch 512): AdamW 1e-3 trains small detection sets well at
# batch 8 (README, detection); ViTDet's 1e-4 at batch 64 is 8e-4 per 512.
DEFAULT_LR = 1e-3
EPOCHS, WARMUP_EPOCHS = 12, 1.0


@dataclasses.dataclass(frozen=True)
class DetectConfig(FinetuneOptions):
    """Everything ``simmim-deploy train detect`` needs (help text in each field's metadata).

    ``lr``, ``layer_decay``, ``img_size``, ``warmup_epochs`` and ``val_split`` left at None take
    their defaults once, in :func:`resolve_defaults`.
    """

    data: str = option(
        help="COCO folder (annotations.json + images/, or train/ + val/), yolo:PATH, voc:PATH "
        "or builtin:digits-det."
    )
    out: str = option(help="Run folder (best.pt, last.pt, metrics.json, config.yaml, vis/).")
    val_data: str | None = option(None, "Separate validation data.")
    val_split: float | None = option(
        None, "Hold out this fraction of --data when it has no val part (default 0.1)."
    )
    model: str = option("vit_micro_patch8_64", "timm model name of the encoder.")
    pretrained: str = option(
        "none", "encoder.safetensors, official SimMIM .pth, timm state dict, or none (scratch)."
    )
    img_size: int | None = option(
        None, "Square input side (letterboxed; default: the encoder's input size)."
    )
    model_kwargs: dict[str, Any] = option(
        help="Extra timm.create_model kwargs, e.g. {window_size: 7}.",
        cli=False,
        default_factory=dict,
    )
    drop_path: float = option(0.1, "Stochastic depth of the encoder.")
    DEFAULT_BATCH: ClassVar[int] = 16  # batch_size when not given (halved on small sets)
    warmup_lr: float = redefault(RunOptions, "warmup_lr", 8e-7)
    min_lr: float = redefault(RunOptions, "min_lr", 0.0)
    layer_decay: float | None = option(
        None, "Layer-wise LR decay (default 0.7 ViT, 0.9 Swin; 1 = off)."
    )
    weight_decay: float = option(0.05, "AdamW weight decay.")
    neck_channels: int = option(128, "Channels of the neck and the head.")
    head_convs: int = option(2, "Convolutions in each head tower.")
    head: Literal["auto", "fcos", "centernet"] = option(
        "auto", "Detection head: auto (chosen from the training boxes), fcos or centernet."
    )
    strides: tuple[int, ...] | None = option(
        None, "Pyramid strides, ascending (comma list; default: chosen from the training boxes)."
    )
    range_mult: float = option(8.0, "FCOS level size ranges: stride x this.")
    center_radius: float = option(1.5, "FCOS centre sampling radius in strides (0: off).")
    jitter: float | None = option(
        None,
        "Smallest share of the input the longer side takes (scale jitter; default: 1, none, for "
        "small objects, else 0.75).",
    )
    hflip: float | None = option(
        None, "Horizontal flip probability in training (default: the --aug preset's)."
    )
    score_thresh: float = option(0.05, "Drop detections scoring at or below this.")
    nms_iou: float = option(0.6, "Class-aware NMS IoU.")
    pre_nms_topk: int = option(1000, "Candidates kept before NMS.")
    max_dets: int = option(100, "Detections per image.")
    eval_batch_size: int | None = option(None, "Validation batch (default: --batch-size).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.val_data is not None and self.val_split is not None:
            raise UserError("give either --val-data or --val-split, not both")
        if self.val_split is not None and not 0.0 < self.val_split < 1.0:
            raise UserError(f"val_split must be in (0, 1), got {self.val_split}")
        if self.max_dets < 1:
            raise UserError(f"max_dets must be at least 1, got {self.max_dets}")
        if self.pre_nms_topk < self.max_dets:
            raise UserError(f"pre_nms_topk ({self.pre_nms_topk}) must be >= max_dets")
        if self.layer_decay is not None and not 0.0 < self.layer_decay <= 1.0:
            raise UserError(f"layer_decay must be in (0, 1], got {self.layer_decay}")
        for name in ("score_thresh", "nms_iou", "hflip"):
            if getattr(self, name) is not None and not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.jitter is not None and not 0.1 <= self.jitter <= 1.0:
            raise UserError(f"jitter must be in [0.1, 1], got {self.jitter}")
        if self.strides is not None and (
            list(self.strides) != sorted(set(self.strides)) or not self.strides
        ):
            raise UserError(f"strides must be distinct and ascending, got {list(self.strides)}")
        if (
            self.strides
            and self.img_size is not None
            and any(self.img_size % s for s in self.strides)
        ):
            raise UserError(f"img_size {self.img_size} must be a multiple of {max(self.strides)}")
        if self.drop_path < 0 or self.weight_decay < 0 or self.center_radius < 0:
            raise UserError("drop_path, weight_decay and center_radius must be >= 0")


def resolve_defaults(config: DetectConfig) -> DetectConfig:
    """Fill the options left at None (layer decay, input size, LR, warmup, val split)."""
    values: dict[str, Any] = {}
    if config.lr is None:
        values["lr"] = DEFAULT_LR
    if config.warmup_epochs is None and config.epochs is not None:  # else: train.budget
        values["warmup_epochs"] = cap_warmup(WARMUP_EPOCHS, config.epochs)[0]
    if config.val_split is None and config.val_data is None:
        values["val_split"] = 0.1
    if config.layer_decay is None:
        values["layer_decay"] = LAYER_DECAY[model_family(config.model)]
    if config.img_size is None:
        import timm

        import simmim_deploy.models  # noqa: F401  (registers the tiny encoders)

        if not timm.is_model(config.model):
            raise UserError(f"unknown timm model '{config.model}'")
        values["img_size"] = int(timm.get_pretrained_cfg(config.model).input_size[-1])
    return dataclasses.replace(config, **values)
