"""FCOS training targets and loss (Tian et al., 2019; with the centre-sampling improvements).

Pure functions, no module state: the detector's ``forward`` never sees the loss, so it exports.
Shapes: ``B`` images, ``N`` points over all pyramid levels, ``G`` ground-truth slots per image
(padded; label -1 marks an empty slot), ``C`` classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

# Centerness target of a forced positive (see ``assign_targets``): enough to weight its box
# loss and keep its score competitive, well below a well-centred point's.
FORCED_CENTERNESS = 0.5


@dataclass(frozen=True)
class FcosTargets:
    """Per-point training targets.

    Attributes:
        labels: ``(B, N)`` int64 class index, ``num_classes`` for background.
        boxes: ``(B, N, 4)`` xyxy box of the assigned object (0 for background).
        centerness: ``(B, N)`` centerness of the point inside its object (0 for background).
    """

    labels: torch.Tensor
    boxes: torch.Tensor
    centerness: torch.Tensor


def scale_ranges(strides: list[int], range_mult: float = 8.0) -> list[tuple[float, float]]:
    """FCOS size-of-interest per level: level ``i`` takes objects whose largest side distance
    from the point lies in ``[range_mult*stride_{i-1}, range_mult*stride_i)``; the first level
    starts at 0 and the last is unbounded (``range_mult=8`` gives FCOS's 64/128/... bounds)."""
    bounds = [0.0] + [range_mult * s for s in strides[:-1]] + [math.inf]
    return [(bounds[i], bounds[i + 1]) for i in range(len(strides))]


def assign_targets(
    points: torch.Tensor,
    point_strides: torch.Tensor,
    point_ranges: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    num_classes: int,
    center_radius: float | None = 1.5,
    force_nearest: bool = True,
) -> FcosTargets:
    """Assign each point to at most one object (the smallest that qualifies).

    A point is a positive for an object when it lies inside the box (or, with centre sampling,
    inside a ``center_radius * stride`` square around the box centre, clipped to the box) and the
    largest of its four side distances falls in the level's size range. An object no point
    qualifies for (smaller than the grid spacing and lying between points) would get no
    training signal at all; with ``force_nearest`` the finest-level point nearest its centre
    becomes its positive (unless a smaller object claims that point), with centerness target
    :data:`FORCED_CENTERNESS` (the point may lie just outside the box, where FCOS's centerness is
    0 and would zero the box loss's weight).

    Args:
        points: ``(N, 2)`` point centres ``(x, y)`` in input pixels.
        point_strides: ``(N,)`` stride of each point's level.
        point_ranges: ``(N, 2)`` size range ``[lo, hi)`` of each point's level.
        gt_boxes: ``(B, G, 4)`` xyxy object boxes in input pixels (padded).
        gt_labels: ``(B, G)`` int64 class indices, -1 for padded slots.
        num_classes: number of classes (the background label).
        center_radius: centre-sampling radius in strides, or None to use the whole box.

    Returns:
        :class:`FcosTargets`.
    """
    px = points[None, :, None, 0]  # (1, N, 1)
    py = points[None, :, None, 1]
    x1, y1, x2, y2 = (gt_boxes[:, None, :, i] for i in range(4))  # (B, 1, G)
    ltrb = torch.stack([px - x1, py - y1, x2 - px, y2 - py], dim=-1)  # (B, N, G, 4)
    if center_radius is None:
        inside = ltrb.amin(dim=-1) > 0
    else:
        rad = (point_strides * center_radius)[None, :, None]
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        cbox = torch.stack(
            [
                px - torch.maximum(cx - rad, x1),
                py - torch.maximum(cy - rad, y1),
                torch.minimum(cx + rad, x2) - px,
                torch.minimum(cy + rad, y2) - py,
            ],
            dim=-1,
        )
        inside = cbox.amin(dim=-1) > 0
    reach = ltrb.amax(dim=-1)
    lo, hi = point_ranges[None, :, None, 0], point_ranges[None, :, None, 1]
    valid = gt_labels[:, None, :] >= 0  # (B, 1, G)
    ok = inside & (reach >= lo) & (reach < hi) & valid
    forced = torch.zeros_like(ok)
    if force_nearest:
        forced = _nearest_finest_point(points, point_strides, gt_boxes, valid & ~ok.any(1, True))
        ok = ok | forced
    area = ((x2 - x1) * (y2 - y1)).expand_as(reach)
    area = torch.where(ok, area, torch.full_like(area, math.inf))
    min_area, match = area.min(dim=-1)  # (B, N)
    positive = torch.isfinite(min_area)

    labels = gt_labels.gather(1, match)
    labels = torch.where(positive, labels, torch.full_like(labels, num_classes))
    boxes = gt_boxes.gather(1, match.unsqueeze(-1).expand(-1, -1, 4))
    boxes = boxes * positive.unsqueeze(-1).to(boxes.dtype)
    matched = ltrb.gather(2, match[..., None, None].expand(-1, -1, 1, 4)).squeeze(2)
    centerness = centerness_target(matched.clamp(min=0))
    was_forced = forced.gather(2, match.unsqueeze(-1)).squeeze(-1) & positive
    centerness = torch.where(was_forced, centerness.clamp(min=FORCED_CENTERNESS), centerness)
    centerness = centerness * positive.to(matched.dtype)
    return FcosTargets(labels=labels, boxes=boxes, centerness=centerness)


def _nearest_finest_point(
    points: torch.Tensor, point_strides: torch.Tensor, gt_boxes: torch.Tensor, need: torch.Tensor
) -> torch.Tensor:
    """``(B, N, G)`` mask: for each object flagged in ``need (B, 1, G)``, the point of the finest
    level nearest its box centre."""
    centres = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2  # (B, G, 2)
    dist = (points[None, :, None, :] - centres[:, None, :, :]).square().sum(-1)  # (B, N, G)
    finest = (point_strides == point_strides.min())[None, :, None]
    nearest = dist.masked_fill(~finest, math.inf).argmin(dim=1, keepdim=True)  # (B, 1, G)
    forced = torch.zeros_like(dist, dtype=torch.bool)
    return forced.scatter(1, nearest, need)


def centerness_target(ltrb: torch.Tensor) -> torch.Tensor:
    """FCOS centerness ``sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b))`` of ``(..., 4)`` distances."""
    lr, tb = ltrb[..., 0::2], ltrb[..., 1::2]
    ratio = (lr.amin(-1) / lr.amax(-1).clamp(min=1e-6)) * (
        tb.amin(-1) / tb.amax(-1).clamp(min=1e-6)
    )
    return ratio.clamp(min=0).sqrt()


def fcos_loss(
    cls_logits: torch.Tensor,
    pred_boxes: torch.Tensor,
    centerness_logits: torch.Tensor,
    targets: FcosTargets,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
) -> dict[str, torch.Tensor]:
    """Sigmoid focal loss + centerness-weighted GIoU loss + centerness BCE.

    Classification is normalised by the number of positives; the GIoU term by the sum of the
    positives' centerness targets (FCOS's weighting); centerness BCE by the number of positives.

    Args:
        cls_logits: ``(B, N, C)`` class logits.
        pred_boxes: ``(B, N, 4)`` decoded xyxy boxes in input pixels.
        centerness_logits: ``(B, N)`` centerness logits.
        targets: from :func:`assign_targets`.
        focal_alpha: focal-loss positive weight.
        focal_gamma: focal-loss focusing exponent.

    Returns:
        ``{"loss", "loss_cls", "loss_box", "loss_ctr"}`` scalars; ``loss`` is their sum.
    """
    num_classes = cls_logits.shape[-1]
    positive = targets.labels < num_classes
    num_pos = positive.sum().clamp(min=1).to(cls_logits.dtype)
    onehot = F.one_hot(targets.labels, num_classes + 1)[..., :num_classes].to(cls_logits.dtype)
    loss_cls = (
        sigmoid_focal_loss(cls_logits, onehot, focal_alpha, focal_gamma, reduction="sum") / num_pos
    )
    if positive.any():
        weight = targets.centerness[positive]
        giou = generalized_box_iou_loss(
            pred_boxes[positive].float(), targets.boxes[positive].float(), reduction="none"
        )
        loss_box = (giou * weight).sum() / weight.sum().clamp(min=1e-6)
        loss_ctr = (
            F.binary_cross_entropy_with_logits(
                centerness_logits[positive].float(), weight, reduction="sum"
            )
            / num_pos
        )
    else:
        # Keep the graph connected so every parameter gets a (zero) gradient.
        loss_box = pred_boxes.sum() * 0.0
        loss_ctr = centerness_logits.sum() * 0.0
    loss = loss_cls + loss_box + loss_ctr
    return {"loss": loss, "loss_cls": loss_cls, "loss_box": loss_box, "loss_ctr": loss_ctr}
