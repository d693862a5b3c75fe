"""Detection post-processing that exports to ONNX: decode, threshold, class-aware NMS, top-k, pad.

Every shape here is static except the NMS selection, which stays inside one
``torchvision.ops.nms`` call (ONNX ``NonMaxSuppression`` in the TorchScript exporter). Images and
classes are kept apart by offsetting each (image, class) group into its own coordinate range,
so one NMS call serves the whole batch and the batch axis stays dynamic in the exported graph.
Kept scores are then scattered back into a dense ``(B, M)`` table and the top ``K`` per image
are taken, which gives fixed-size outputs whose padded rows have score 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import nms

#: Label written in padded rows (no detection).
PAD_LABEL = -1


@dataclass(frozen=True)
class PostprocessConfig:
    """Post-processing thresholds (stored in the checkpoint's ``meta["postprocess"]``).

    Attributes:
        score_thresh: candidates scoring at or below this are dropped.
        nms_iou: boxes of the same class and image overlapping more than this are suppressed.
        pre_nms_topk: candidates per image that enter NMS (by score).
        max_dets: ``K``, detections returned per image (fixed; padded with score 0).
    """

    score_thresh: float = 0.05
    nms_iou: float = 0.6
    pre_nms_topk: int = 1000
    max_dets: int = 100


def decode_ltrb(points: torch.Tensor, ltrb: torch.Tensor, img_size: int) -> torch.Tensor:
    """Turn per-point distances to the four box sides into xyxy boxes, clipped to the input.

    Args:
        points: ``(N, 2)`` point centres ``(x, y)`` in input pixels.
        ltrb: ``(B, N, 4)`` non-negative distances ``(left, top, right, bottom)`` in pixels.
        img_size: side of the square network input, for clipping.

    Returns:
        ``(B, N, 4)`` xyxy boxes in network-input pixels.
    """
    xy = points.unsqueeze(0)
    boxes = torch.cat([xy - ltrb[..., :2], xy + ltrb[..., 2:]], dim=-1)
    return boxes.clamp(min=0.0, max=float(img_size))


def postprocess(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    cfg: PostprocessConfig,
    img_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Score threshold, class-aware NMS per image, top-k and fixed-size padding.

    Args:
        boxes: ``(B, N, 4)`` xyxy candidate boxes in network-input pixels.
        scores: ``(B, N, C)`` per-class scores in ``[0, 1]``.
        cfg: thresholds and sizes.
        img_size: side of the network input (bounds box coordinates for the NMS offsets).

    Returns:
        ``boxes (B, K, 4)``, ``scores (B, K)``, ``labels (B, K)`` int64 and
        ``num_detections (B,)`` int64, ``K = min(max_dets, M)``, ``M = min(pre_nms_topk, N*C)``.
        Rows are sorted by score; padded rows have score 0, box 0 and label :data:`PAD_LABEL`.
    """
    num_points, num_classes = scores.shape[1], scores.shape[2]
    m = min(cfg.pre_nms_topk, num_points * num_classes)
    k = min(cfg.max_dets, m)
    # Zero, not drop, what misses the threshold: dropping would make shapes data-dependent.
    flat = scores.reshape(scores.shape[0], -1)
    flat = torch.where(flat > cfg.score_thresh, flat, torch.zeros_like(flat))
    cand_scores, cand_idx = flat.topk(m, dim=1)
    point_idx = torch.div(cand_idx, num_classes, rounding_mode="floor")
    cand_labels = cand_idx - point_idx * num_classes
    cand_boxes = boxes.gather(1, point_idx.unsqueeze(-1).expand(-1, -1, 4))

    keep_scores = batched_class_nms(
        cand_boxes, cand_scores, cand_labels, num_classes, cfg.nms_iou, img_size
    )
    top_scores, top_idx = keep_scores.topk(k, dim=1)
    valid = top_scores > 0
    top_boxes = cand_boxes.gather(1, top_idx.unsqueeze(-1).expand(-1, -1, 4))
    top_boxes = top_boxes * valid.unsqueeze(-1).to(top_boxes.dtype)
    top_labels = cand_labels.gather(1, top_idx)
    top_labels = torch.where(valid, top_labels, torch.full_like(top_labels, PAD_LABEL))
    num_detections = valid.sum(dim=1, dtype=torch.int64)
    return top_boxes, top_scores, top_labels, num_detections


def batched_class_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    iou_threshold: float,
    img_size: int,
) -> torch.Tensor:
    """Greedy NMS within each (image, class) group, in one NMS call for the whole batch.

    Args:
        boxes: ``(B, M, 4)`` xyxy boxes within ``[0, img_size]``.
        scores: ``(B, M)`` scores; 0 means "not a candidate".
        labels: ``(B, M)`` int64 class indices in ``[0, num_classes)``.
        num_classes: number of classes.
        iou_threshold: suppress a box whose IoU with a kept higher-scoring box is above this.
        img_size: bound on coordinates; groups are offset by ``img_size + 1`` so they never touch.

    Returns:
        ``(B, M)`` scores of the kept boxes, 0 elsewhere.
    """
    # Image index per row without arange(B): keeps the batch axis symbolic when traced.
    batch_idx = torch.ones_like(labels).cumsum(0) - 1
    group = (batch_idx * num_classes + labels).to(boxes.dtype)
    offsets = (group * float(img_size + 1)).unsqueeze(-1)
    flat_boxes = (boxes + offsets).reshape(-1, 4)
    flat_scores = scores.reshape(-1)
    # Non-candidates (score 0) all get one and the same box, outside every group: identical boxes
    # suppress each other, so NMS keeps one of them rather than all B x M. Greedy NMS compares
    # each box with the ones kept so far, so those kept zeros made it quadratic in the batch (at
    # batch 32 it was 86 % of a small detector's time on OpenVINO). Outputs are unchanged: a
    # zero-score box never suppresses a scored one (it comes later in score order).
    idle_box = torch.tensor([-2.0, -2.0, -1.0, -1.0], dtype=flat_boxes.dtype, device=boxes.device)
    flat_boxes = torch.where((flat_scores > 0).unsqueeze(-1), flat_boxes, idle_box)
    keep = nms(flat_boxes, flat_scores, iou_threshold)
    kept = torch.zeros_like(flat_scores).scatter(0, keep, flat_scores.gather(0, keep))
    return kept.reshape(scores.shape)


def boxes_to_original(
    boxes: torch.Tensor,
    letterbox_scale: torch.Tensor | float,
    pad: tuple[float, float] = (0.0, 0.0),
    original_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Torch twin of :func:`simmim_deploy.core.boxes.boxes_to_original`.

    Args:
        boxes: ``(..., 4)`` xyxy boxes in network-input pixels.
        letterbox_scale: resize factor of the letterbox; a scalar or a tensor broadcastable to
            ``boxes[..., :1]`` (e.g. ``(B, 1, 1)`` for a batch).
        pad: ``(left, top)`` padding in network-input pixels.
        original_size: ``(width, height)`` to clip to, or None.

    Returns:
        ``(..., 4)`` boxes in original image pixels.
    """
    shift = torch.tensor([pad[0], pad[1], pad[0], pad[1]], dtype=boxes.dtype, device=boxes.device)
    out = (boxes - shift) / letterbox_scale
    if original_size is not None:
        width, height = original_size
        bound = torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
        out = torch.minimum(out.clamp(min=0), bound)
    return out
