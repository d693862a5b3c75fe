"""The ``train detect`` config: one frozen dataclass, validated on construction.

Defaults follow ViTDet-style fine-tuning of a MIM backbone (AdamW, layer-wise LR decay, drop
path 0.1, warmup then cosine) with an FCOS head. ``layer_decay`` and ``img_size`` left at None
take the family / model default once, in :func:`resolve_defaults`; ``config.yaml`` records the
resolved values. Conflicting options are refused, never rewritten.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from simmim_deploy.core.errors import UserError

# ViTDet fine-tunes ViT-B with layer decay 0.7; Swin FPN detectors use a milder 0.9.
LAYER_DECAY = {"vit": 0.7, "swin": 0.9}
DEFAULT_BASE_LR = 8e-4  # per 512 images: ViTDet's 1e-4 at batch 64


@dataclasses.dataclass(frozen=True)
class DetectConfig:
    """Everything ``simmim-deploy train detect`` needs.

    Attributes:
        data: a COCO folder (``annotations.json`` + ``images/``, or ``train/`` + ``val/``),
            ``yolo:PATH``, ``voc:PATH`` or ``builtin:digits-det``.
        out: run folder (best.pt, last.pt, metrics.json, config.yaml, vis/, tensorboard/).
        val_data: separate validation data; else the source's val part or ``val_split``.
        val_split: share of ``data`` held out when it has no validation part (None: 0.1).
        model: timm encoder name; pretrained: encoder weights file or ``none`` (scratch).
        img_size: square network input side (None: the encoder's default input size).
        model_kwargs: extra ``timm.create_model`` kwargs (e.g. ``{window_size: 7}``).
        drop_path: stochastic depth of the encoder.
        epochs, batch_size (per process), accumulation: the budget.
        base_lr: peak LR per 512 images (None: 8e-4 unless ``lr``); lr: absolute peak LR.
        warmup_epochs, min_lr: schedule (linear warmup, cosine to ``min_lr``); warmup None:
            1 epoch, at most 20% of the run.
        layer_decay: layer-wise LR decay (None: 0.7 ViT, 0.9 Swin; 1.0 disables).
        weight_decay, clip_grad: AdamW decay and grad-norm clipping.
        neck_channels, head_convs, strides: neck/head width, tower depth, pyramid strides.
        range_mult, center_radius: FCOS level size ranges and centre sampling (0 disables).
        jitter: smallest share of the input the longer side takes in training (scale jitter).
        hflip: horizontal-flip probability in training.
        score_thresh, nms_iou, pre_nms_topk, max_dets: post-processing (stored in best.pt).
        eval_every, eval_batch_size: validation cadence and batch.
        device, precision, seed, workers, compile, resume, save_every_steps, stop_at_step,
        progress: how to run (see the engine).
    """

    data: str
    out: str
    val_data: str | None = None
    val_split: float | None = None
    model: str = "vit_micro_patch8_64"
    pretrained: str = "none"
    img_size: int | None = None
    model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    drop_path: float = 0.1
    epochs: int = 12
    batch_size: int = 16
    accumulation: int = 1
    base_lr: float | None = None
    lr: float | None = None
    warmup_epochs: float | None = None
    min_lr: float = 0.0
    layer_decay: float | None = None
    weight_decay: float = 0.05
    clip_grad: float | None = 5.0
    neck_channels: int = 128
    head_convs: int = 2
    strides: tuple[int, ...] = (8, 16, 32)
    range_mult: float = 8.0
    center_radius: float = 1.5
    jitter: float = 0.75
    hflip: float = 0.5
    score_thresh: float = 0.05
    nms_iou: float = 0.6
    pre_nms_topk: int = 1000
    max_dets: int = 100
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
        if self.val_data is not None and self.val_split is not None:
            raise UserError("give either --val-data or --val-split, not both")
        if self.val_split is not None and not 0.0 < self.val_split < 1.0:
            raise UserError(f"val_split must be in (0, 1), got {self.val_split}")
        if self.lr is not None and self.base_lr is not None:
            raise UserError("give either --base-lr (per 512 images) or --lr (absolute), not both")
        for name in ("epochs", "batch_size", "accumulation", "eval_every", "max_dets"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.pre_nms_topk < self.max_dets:
            raise UserError(f"pre_nms_topk ({self.pre_nms_topk}) must be >= max_dets")
        if self.warmup_epochs is not None and not 0 <= self.warmup_epochs < self.epochs:
            raise UserError(f"warmup_epochs must be in [0, epochs={self.epochs})")
        if self.layer_decay is not None and not 0.0 < self.layer_decay <= 1.0:
            raise UserError(f"layer_decay must be in (0, 1], got {self.layer_decay}")
        for name in ("score_thresh", "nms_iou", "hflip"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.1 <= self.jitter <= 1.0:
            raise UserError(f"jitter must be in [0.1, 1], got {self.jitter}")
        if list(self.strides) != sorted(set(self.strides)) or not self.strides:
            raise UserError(f"strides must be distinct and ascending, got {list(self.strides)}")
        if self.img_size is not None and any(self.img_size % s for s in self.strides):
            raise UserError(f"img_size {self.img_size} must be a multiple of {max(self.strides)}")
        if self.drop_path < 0 or self.weight_decay < 0 or self.center_radius < 0:
            raise UserError("drop_path, weight_decay and center_radius must be >= 0")


def model_family(model_name: str) -> str:
    """``swin`` or ``vit`` (ViT-style: vit, deit, beit, eva)."""
    return "swin" if model_name.startswith("swin") else "vit"


def resolve_defaults(config: DetectConfig) -> DetectConfig:
    """Fill the options left at None (layer decay, input size, LR, warmup, val split)."""
    values: dict[str, Any] = {}
    if config.base_lr is None and config.lr is None:
        values["base_lr"] = DEFAULT_BASE_LR
    if config.warmup_epochs is None:
        values["warmup_epochs"] = min(1.0, 0.2 * config.epochs)
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
