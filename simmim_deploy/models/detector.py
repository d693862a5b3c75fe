"""Dense object detector on a (SimMIM-pretrained) timm encoder: backbone + neck + dense head.

- ``backbone``: the timm encoder itself, so its parameter names are timm's under ``backbone.``
  and a SimMIM encoder state dict loads into it unchanged.
- ``neck``: ViT -> ViTDet-style simple feature pyramid from the last feature map; Swin -> its
  stages plus a small FPN (:mod:`simmim_deploy.models.det_neck`).
- ``head``: FCOS (shared conv towers; class logits, ltrb distances, centerness) over the
  pyramid, or CenterNet (heatmap peaks, size, offset) on its finest level
  (:mod:`simmim_deploy.models.centernet_head`; which one: :mod:`simmim_deploy.models.det_plan`).

``forward`` is the exportable inference graph (decode + NMS + top-k with fixed-size outputs);
``forward_train`` returns the raw head outputs for :mod:`simmim_deploy.models.det_loss`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import timm
import torch
from torch import nn

from simmim_deploy.core.errors import UserError
from simmim_deploy.models import adapter
from simmim_deploy.models.centernet_head import CenterNetHead, decode_centernet
from simmim_deploy.models.det_loss import scale_ranges
from simmim_deploy.models.det_neck import (
    SimpleFeaturePyramid,
    SwinFPN,
    group_norm,
    swin_stage_indices,
)
from simmim_deploy.models.postprocess import PostprocessConfig, decode_ltrb, postprocess

log = logging.getLogger(__name__)

DEFAULT_STRIDES = (8, 16, 32)
HEAD_TYPES = ("fcos", "centernet")


@dataclasses.dataclass(frozen=True)
class HeadConfig:
    """Architecture facts of neck and head (stored in ``meta["head"]``).

    Attributes:
        strides: pyramid strides (input pixels per feature cell), ascending.
        channels: neck/head width.
        num_convs: conv layers in each head tower.
        range_mult: FCOS size-of-interest multiplier (see ``det_loss.scale_ranges``).
        center_radius: centre-sampling radius in strides (0 disables it).
        type: ``fcos`` (every stride) or ``centernet`` (the finest stride only).
    """

    strides: tuple[int, ...] = DEFAULT_STRIDES
    channels: int = 128
    num_convs: int = 2
    range_mult: float = 8.0
    center_radius: float = 1.5
    type: str = "fcos"


class FcosHead(nn.Module):
    """FCOS head shared over levels: ``(B, C_in, h, w)`` maps -> per-point predictions."""

    def __init__(self, channels: int, num_classes: int, num_convs: int, num_levels: int) -> None:
        super().__init__()

        def tower() -> nn.Sequential:
            layers: list[nn.Module] = []
            for _ in range(num_convs):
                layers += [nn.Conv2d(channels, channels, 3, padding=1), group_norm(channels)]
                layers.append(nn.ReLU(inplace=True))
            return nn.Sequential(*layers)

        self.cls_tower, self.box_tower = tower(), tower()
        self.cls_logits = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.box_pred = nn.Conv2d(channels, 4, 3, padding=1)
        self.centerness = nn.Conv2d(channels, 1, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(num_levels))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        # Focal-loss prior: start with p(object) = 0.01 so background does not swamp the loss.
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - 0.01) / 0.01))

    def forward(
        self, features: list[torch.Tensor], strides: tuple[int, ...]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``cls (B, N, C)``, ``ltrb (B, N, 4)`` in pixels, ``ctr (B, N)`` logits."""
        cls_out, box_out, ctr_out = [], [], []
        for level, (feat, stride) in enumerate(zip(features, strides, strict=True)):
            c, b = self.cls_tower(feat), self.box_tower(feat)
            cls_out.append(self.cls_logits(c).flatten(2).transpose(1, 2))
            # FCOS "norm_reg_targets": distances in strides, learnable per-level scale, ReLU.
            ltrb = torch.relu(self.box_pred(b) * self.scales[level]) * stride
            box_out.append(ltrb.flatten(2).transpose(1, 2))
            ctr_out.append(self.centerness(b).flatten(1))
        return torch.cat(cls_out, 1), torch.cat(box_out, 1), torch.cat(ctr_out, 1)


class Detector(nn.Module):
    """timm encoder + neck + FCOS head with exportable post-processing.

    Args:
        backbone: a timm encoder (ViT / BEiT / EVA / Swin family).
        num_classes: object classes.
        img_size: side of the square (letterboxed) network input.
        head_cfg: neck/head architecture.
        post_cfg: post-processing thresholds.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        img_size: int,
        head_cfg: HeadConfig,
        post_cfg: PostprocessConfig,
    ) -> None:
        super().__init__()
        adapter.check_supported(backbone)
        self.backbone = backbone
        self.num_classes = num_classes
        self.img_size = img_size
        self.head_cfg = head_cfg
        self.post_cfg = post_cfg
        self.swin = adapter.is_swin(backbone)
        strides = tuple(head_cfg.strides)
        if head_cfg.type not in HEAD_TYPES:
            raise UserError(f"unknown detection head '{head_cfg.type}' (choose from {HEAD_TYPES})")
        if any(img_size % s for s in strides):
            raise UserError(f"img_size {img_size} must be a multiple of every stride {strides}")
        self.stage_indices: list[int] = []
        if self.swin:
            self.stage_indices = swin_stage_indices(backbone.feature_info, strides)
            in_channels = [int(backbone.feature_info[i]["num_chs"]) for i in self.stage_indices]
            self.neck: nn.Module = SwinFPN(in_channels, head_cfg.channels)
        else:
            stride = adapter.encoder_stride(backbone)
            self.neck = SimpleFeaturePyramid(
                adapter.num_features(backbone), stride, strides, head_cfg.channels
            )
        self.centernet = head_cfg.type == "centernet"
        self.head: nn.Module = (
            CenterNetHead(head_cfg.channels, num_classes, head_cfg.num_convs)
            if self.centernet
            else FcosHead(head_cfg.channels, num_classes, head_cfg.num_convs, len(strides))
        )
        points, point_strides, point_ranges = _grid(img_size, strides, head_cfg.range_mult)
        # Fixed input size -> fixed point grid: constants in the exported graph.
        self.register_buffer("points", points, persistent=False)
        self.register_buffer("point_strides", point_strides, persistent=False)
        self.register_buffer("point_ranges", point_ranges, persistent=False)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``(B, 3, S, S)`` -> one ``(B, channels, S/stride, S/stride)`` map per stride."""
        if self.swin:
            # timm's public multi-scale API (stable across timm 1.0.x), NCHW stage outputs.
            stages = self.backbone.forward_intermediates(
                images, indices=self.stage_indices, output_fmt="NCHW", intermediates_only=True
            )
            return self.neck(stages)
        return self.neck(adapter.forward_feature_map(self.backbone, images))

    def forward_train(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw head outputs for the loss.

        Args:
            images: ``(B, 3, S, S)`` normalised, letterboxed images.

        Returns:
            FCOS: ``cls_logits (B, N, C)``, ``ltrb (B, N, 4)`` pixels, ``boxes (B, N, 4)`` xyxy
            (unclipped), ``centerness (B, N)`` logits; ``N`` points over all levels.
            CenterNet: ``heat``, ``size``, ``offset`` maps of the finest stride (see
            :class:`~simmim_deploy.models.centernet_head.CenterNetHead`).
        """
        if self.centernet:
            return self.head(self.features(images)[0])
        cls_logits, ltrb, ctr = self.head(self.features(images), tuple(self.head_cfg.strides))
        xy = self.points.unsqueeze(0)
        boxes = torch.cat([xy - ltrb[..., :2], xy + ltrb[..., 2:]], dim=-1)
        return {"cls_logits": cls_logits, "ltrb": ltrb, "boxes": boxes, "centerness": ctr}

    def forward(
        self, images: torch.Tensor, raw: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | dict[str, torch.Tensor]:
        """Detect objects (the exported graph), or return raw head outputs when ``raw``.

        ``raw=True`` is :meth:`forward_train` reached through ``forward``, so DDP and
        ``torch.compile`` wrappers see the training call.

        Args:
            images: ``(B, 3, S, S)`` normalised, letterboxed images.
            raw: return :meth:`forward_train`'s dict instead of detections.

        Returns:
            ``boxes (B, K, 4)`` xyxy in network-input pixels, ``scores (B, K)``,
            ``labels (B, K)`` int64 (-1 in padded rows), ``num_detections (B,)`` int64.
        """
        if raw:
            return self.forward_train(images)
        if self.centernet:
            maps = self.head(self.features(images)[0])
            boxes, scores = decode_centernet(
                maps["heat"], maps["size"], maps["offset"], self.head_cfg.strides[0], self.img_size
            )
            return postprocess(boxes, scores, self.post_cfg, self.img_size)
        cls_logits, ltrb, ctr = self.head(self.features(images), tuple(self.head_cfg.strides))
        boxes = decode_ltrb(self.points, ltrb, self.img_size)
        scores = torch.sqrt(torch.sigmoid(cls_logits) * torch.sigmoid(ctr).unsqueeze(-1))
        return postprocess(boxes, scores, self.post_cfg, self.img_size)


def _grid(
    img_size: int, strides: tuple[int, ...], range_mult: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Point centres ``(N, 2)``, their strides ``(N,)`` and size ranges ``(N, 2)``."""
    points, point_strides, point_ranges = [], [], []
    for stride, (lo, hi) in zip(strides, scale_ranges(list(strides), range_mult), strict=True):
        n = img_size // stride
        centres = (torch.arange(n, dtype=torch.float32) + 0.5) * stride
        yy, xx = torch.meshgrid(centres, centres, indexing="ij")
        points.append(torch.stack([xx.flatten(), yy.flatten()], dim=1))
        point_strides.append(torch.full((n * n,), float(stride)))
        point_ranges.append(torch.tensor([[lo, hi]]).expand(n * n, 2))
    return torch.cat(points), torch.cat(point_strides), torch.cat(point_ranges)


def build_detector(
    model_name: str,
    num_classes: int,
    img_size: int,
    pretrained: str | None = None,
    head: HeadConfig | dict[str, Any] | None = None,
    post: PostprocessConfig | dict[str, Any] | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> Detector:
    """Build a detector on the timm encoder ``model_name``.

    Args:
        model_name: timm model name (``vit_*``, ``beit_*``, ``eva02_*``, ``swin_*``, ...).
        num_classes: object classes.
        img_size: square network input side; a multiple of every pyramid stride.
        pretrained: path of encoder weights (ours, official SimMIM or timm) or None (scratch).
        head: :class:`HeadConfig` or its fields as a dict.
        post: :class:`PostprocessConfig` or its fields as a dict.
        model_kwargs: extra ``timm.create_model`` kwargs (e.g. ``drop_path_rate``).

    Raises:
        UserError: unknown model name, bad sizes, unreadable weights.
    """
    import simmim_deploy.models  # noqa: F401  (registers the tiny test encoders)

    head_cfg = head if isinstance(head, HeadConfig) else HeadConfig(**_tuples(head or {}))
    post_cfg = post if isinstance(post, PostprocessConfig) else PostprocessConfig(**(post or {}))
    if num_classes < 1:
        raise UserError(f"a detector needs at least one class, got {num_classes}")
    if not timm.is_model(model_name):
        from simmim_deploy.core.config import suggest

        raise UserError(
            f"unknown timm model '{model_name}'{suggest(model_name, timm.list_models())}"
        )
    kwargs = {"num_classes": 0, "img_size": img_size, **(model_kwargs or {})}
    backbone = timm.create_model(model_name, pretrained=False, **kwargs)
    detector = Detector(backbone, num_classes, img_size, head_cfg, post_cfg)
    if pretrained and str(pretrained).lower() != "none":
        from simmim_deploy.models.checkpoint import load_encoder_into, load_encoder_state

        report = load_encoder_into(backbone, load_encoder_state(pretrained))
        if report["missing"]:
            # The neck and head start from scratch by design; a backbone tensor should not.
            log.warning(
                "%d backbone tensors not in %s (random init): %s",
                len(report["missing"]),
                pretrained,
                ", ".join(report["missing"][:5]),
            )
        log.info(
            "loaded encoder weights from %s (%d missing, %d unexpected, %d resized)",
            pretrained,
            len(report["missing"]),
            len(report["unexpected"]),
            len(report["resized"]),
        )
    return detector


def _tuples(values: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def detector_meta(
    model: Detector,
    class_names: list[str],
    model_name: str,
    model_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint ``meta`` (see :mod:`simmim_deploy.models.factory`) of a detector.

    ``model_kwargs`` are the architecture-relevant ``timm.create_model`` kwargs (not
    ``drop_path_rate``, which only matters in training).
    """
    from simmim_deploy.core.checkpoint_meta import CheckpointMeta

    data_cfg = timm.data.resolve_data_config({}, model=model.backbone)
    return CheckpointMeta(
        task="detection",
        model_name=model_name,
        img_size=model.img_size,
        class_names=tuple(str(c) for c in class_names),
        mean=tuple(float(v) for v in data_cfg["mean"]),
        std=tuple(float(v) for v in data_cfg["std"]),
        interpolation="bilinear",  # the training letterbox's resampling
        crop_pct=1.0,
        model_kwargs=dict(model_kwargs or {}),
        head=dataclasses.asdict(model.head_cfg),
        postprocess=dataclasses.asdict(model.post_cfg),
    ).to_dict()


def build_detector_from_meta(meta: dict[str, Any]) -> Detector:
    """Rebuild the (untrained) detector a checkpoint's ``meta`` describes."""
    head = dict(meta.get("head", {}))
    return build_detector(
        meta["model_name"],
        int(meta["num_classes"]),
        int(meta["img_size"]),
        pretrained=None,
        head=head,
        post=meta.get("postprocess"),
        model_kwargs=meta.get("model_kwargs"),
    )
