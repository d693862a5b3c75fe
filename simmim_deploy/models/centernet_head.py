"""CenterNet-style head ("Objects as Points", Zhou et al., 2019): one stride-4 map, no anchors.

Every object is one peak of a per-class heatmap at its box centre; the same cell regresses the
box size (in strides) and the sub-cell offset of the centre. Small, dense objects fit this
better than FCOS: a stride-4 map gives a 15 px nucleus its own cell, with no size ranges to
assign and no centerness to learn.

Decoding (in the exported graph): sigmoid, 3x3 max-pool peak test (a cell that is not the
maximum of its neighbourhood scores 0), boxes from size and offset. The caller then runs the
shared :func:`~simmim_deploy.models.postprocess.postprocess` (threshold, NMS, top-k, padding),
so the outputs are those of every detector here. Training targets and loss:
:mod:`simmim_deploy.models.centernet_loss`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from simmim_deploy.models.det_neck import group_norm

#: Initial heatmap probability (CenterNet's bias -2.19): background does not swamp the loss.
HEAT_PRIOR = 0.1


class CenterNetHead(nn.Module):
    """Heatmap, size and offset branches on one ``(B, channels, h, w)`` map.

    Args:
        channels: input (neck) width.
        num_classes: object classes (heatmap channels).
        num_convs: 3x3 conv + GroupNorm + ReLU layers before each branch's output conv.
    """

    def __init__(self, channels: int, num_classes: int, num_convs: int) -> None:
        super().__init__()

        def branch(out: int) -> nn.Sequential:
            layers: list[nn.Module] = []
            for _ in range(num_convs):
                layers += [nn.Conv2d(channels, channels, 3, padding=1), group_norm(channels)]
                layers.append(nn.ReLU(inplace=True))
            return nn.Sequential(*layers, nn.Conv2d(channels, out, 1))

        self.heat, self.size, self.offset = branch(num_classes), branch(2), branch(2)
        nn.init.constant_(self.heat[-1].bias, -math.log((1 - HEAT_PRIOR) / HEAT_PRIOR))

    def forward(self, feature: torch.Tensor) -> dict[str, torch.Tensor]:
        """Returns ``heat (B, C, h, w)`` logits, ``size (B, 2, h, w)`` box (w, h) in strides,
        ``offset (B, 2, h, w)`` centre offset (x, y) from the cell corner, in strides."""
        return {
            "heat": self.heat(feature),
            "size": self.size(feature),
            "offset": self.offset(feature),
        }


def decode_centernet(
    heat: torch.Tensor, size: torch.Tensor, offset: torch.Tensor, stride: int, img_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Peaks of the heatmap as candidate boxes with per-class scores.

    Args:
        heat: ``(B, C, h, w)`` heatmap logits.
        size: ``(B, 2, h, w)`` box width/height in strides.
        offset: ``(B, 2, h, w)`` centre offset in strides.
        stride: input pixels per map cell.
        img_size: network input side (boxes are clipped to it).

    Returns:
        ``boxes (B, h*w, 4)`` xyxy in input pixels and ``scores (B, h*w, C)``, 0 where the cell
        is not a local maximum of its class.
    """
    prob = torch.sigmoid(heat)
    peaks = prob * (F.max_pool2d(prob, 3, stride=1, padding=1) == prob).to(prob.dtype)
    h, w = heat.shape[-2:]
    ys = torch.arange(h, dtype=heat.dtype, device=heat.device).view(1, h, 1).expand(1, h, w)
    xs = torch.arange(w, dtype=heat.dtype, device=heat.device).view(1, 1, w).expand(1, h, w)
    cx, cy = xs + offset[:, 0], ys + offset[:, 1]
    half_w, half_h = size[:, 0].clamp(min=0) / 2, size[:, 1].clamp(min=0) / 2
    boxes = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1) * stride
    boxes = boxes.flatten(1, 2).clamp(min=0.0, max=float(img_size))
    return boxes, peaks.flatten(2).transpose(1, 2)
