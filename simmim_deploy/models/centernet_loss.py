"""CenterNet training targets and loss (Zhou et al., "Objects as Points", 2019).

Pure functions. Targets: a Gaussian bump per object on its class heatmap, peaking (value 1) at
the cell holding the box centre, with a box-shaped spread (TTFNet's ``sigma = alpha * side / 6``,
``alpha = 0.54``, Liu et al. 2020), overlapping bumps combined by maximum. Loss: CenterNet's
penalty-reduced focal loss on the heatmap, L1 on size (weight 0.1) and centre offset (weight 1)
at each object's centre cell, all normalised by the number of objects.
Shapes: ``B`` images, ``G`` padded object slots (label -1 marks an empty one), ``C`` classes,
``h x w`` the map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SIGMA_ALPHA = 0.54
MIN_SIGMA = 0.5  # cells: an object smaller than a cell still gets a peak and its neighbours
SIZE_WEIGHT = 0.1


def centre_cells(gt_boxes: torch.Tensor, stride: int, h: int, w: int) -> torch.Tensor:
    """``(B, G, 2)`` int64 ``(x, y)`` cell of each box centre (clamped to the map)."""
    centre = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / (2 * stride)
    x = centre[..., 0].floor().clamp(0, w - 1)
    y = centre[..., 1].floor().clamp(0, h - 1)
    return torch.stack([x, y], dim=-1).long()


def heatmap_targets(
    gt_boxes: torch.Tensor, gt_labels: torch.Tensor, num_classes: int, stride: int, h: int, w: int
) -> torch.Tensor:
    """``(B, C, h, w)`` heatmap targets in ``[0, 1]`` (exactly 1 at object centre cells).

    Args:
        gt_boxes: ``(B, G, 4)`` xyxy in input pixels.
        gt_labels: ``(B, G)`` int64, -1 for empty slots.
        num_classes: ``C``.
        stride: input pixels per cell.
        h: map height; w: map width.
    """
    cells = centre_cells(gt_boxes, stride, h, w).to(gt_boxes.dtype)
    side = (gt_boxes[..., 2:] - gt_boxes[..., :2]) / stride
    sigma = (SIGMA_ALPHA * side / 6).clamp(min=MIN_SIGMA)  # (B, G, 2)
    xs = torch.arange(w, dtype=gt_boxes.dtype, device=gt_boxes.device)
    ys = torch.arange(h, dtype=gt_boxes.dtype, device=gt_boxes.device)
    gx = ((xs[None, None] - cells[..., :1]) / sigma[..., :1]).square()  # (B, G, w)
    gy = ((ys[None, None] - cells[..., 1:]) / sigma[..., 1:]).square()  # (B, G, h)
    bump = torch.exp(-(gy[..., :, None] + gx[..., None, :]) / 2)  # (B, G, h, w)
    valid = gt_labels >= 0
    bump = bump * valid[..., None, None].to(bump.dtype)
    index = gt_labels.clamp(min=0)[..., None].expand(-1, -1, h * w)
    heat = torch.zeros(gt_boxes.shape[0], num_classes, h * w, dtype=bump.dtype, device=bump.device)
    heat = heat.scatter_reduce(1, index, bump.flatten(2), reduce="amax", include_self=True)
    return heat.view(-1, num_classes, h, w)


def centernet_loss(
    heat: torch.Tensor,
    size: torch.Tensor,
    offset: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    stride: int,
) -> dict[str, torch.Tensor]:
    """Penalty-reduced focal loss + L1 size + L1 offset.

    Args:
        heat: ``(B, C, h, w)`` heatmap logits.
        size: ``(B, 2, h, w)`` predicted box (w, h) in strides.
        offset: ``(B, 2, h, w)`` predicted centre offset (x, y) in strides.
        gt_boxes: ``(B, G, 4)`` xyxy in input pixels (padded).
        gt_labels: ``(B, G)`` int64, -1 for empty slots.
        stride: input pixels per cell.

    Returns:
        ``{"loss", "loss_heat", "loss_size", "loss_offset"}`` scalars; ``loss`` is the
        weighted sum.
    """
    b, c, h, w = heat.shape
    target = heatmap_targets(gt_boxes.float(), gt_labels, c, stride, h, w)
    valid = (gt_labels >= 0).float()  # (B, G)
    num = valid.sum().clamp(min=1.0)
    logit = heat.float()
    pos = (target == 1).float()
    # log(sigmoid) in the stable form; p clamped as CenterNet to keep the focal terms finite.
    p = torch.sigmoid(logit).clamp(1e-4, 1 - 1e-4)
    pos_term = pos * (1 - p).square() * F.logsigmoid(logit).clamp(min=-9.21)
    neg_term = (1 - pos) * (1 - target).pow(4) * p.square() * F.logsigmoid(-logit).clamp(min=-9.21)
    loss_heat = -(pos_term + neg_term).sum() / num

    cells = centre_cells(gt_boxes, stride, h, w)
    index = (cells[..., 1] * w + cells[..., 0])[:, None, :].expand(-1, 2, -1)  # (B, 2, G)
    pred_size = size.float().flatten(2).gather(2, index)
    pred_off = offset.float().flatten(2).gather(2, index)
    side = ((gt_boxes[..., 2:] - gt_boxes[..., :2]) / stride).transpose(1, 2).float()
    centre = ((gt_boxes[..., :2] + gt_boxes[..., 2:]) / (2 * stride)).transpose(1, 2).float()
    off = centre - cells.transpose(1, 2).float()
    mask = valid[:, None, :]
    loss_size = ((pred_size - side).abs() * mask).sum() / num
    loss_offset = ((pred_off - off).abs() * mask).sum() / num
    loss = loss_heat + SIZE_WEIGHT * loss_size + loss_offset
    return {
        "loss": loss,
        "loss_heat": loss_heat,
        "loss_size": loss_size,
        "loss_offset": loss_offset,
    }
