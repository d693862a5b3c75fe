"""Detection necks: turn encoder features into a pyramid of equal-width maps.

- :class:`SimpleFeaturePyramid` (ViTDet, Li et al. 2022): a plain ViT has one map at its patch
  stride; the pyramid is built from that last map alone with transposed convs (finer levels),
  identity, and max-pooling (coarser levels).
- :class:`SwinFPN`: a hierarchical encoder already has maps at strides 8/16/32; a small FPN
  (lateral 1x1, top-down nearest upsampling, 3x3 output convs) mixes them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from simmim_deploy.core.errors import UserError


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm, up to 32 groups of at least 2 channels (batch-size independent).

    At least 2 channels a group, so a 1x1 map (tiny inputs, coarsest level) still normalises.
    """
    return nn.GroupNorm(math.gcd(32, max(channels // 2, 1)), channels)


def _rescale(in_ch: int, factor: float) -> tuple[nn.Module, int]:
    """Module that resizes a map by ``factor`` (a power of 2) and its output channels."""
    if factor == 1:
        return nn.Identity(), in_ch
    if factor < 1:
        k = round(1 / factor)
        return nn.MaxPool2d(kernel_size=k, stride=k), in_ch
    layers: list[nn.Module] = []
    ch = in_ch
    for step in range(round(math.log2(factor))):
        out = max(ch // 2, 16)
        if step > 0:
            layers += [group_norm(ch), nn.GELU()]
        layers.append(nn.ConvTranspose2d(ch, out, kernel_size=2, stride=2))
        ch = out
    return nn.Sequential(*layers), ch


class SimpleFeaturePyramid(nn.Module):
    """ViTDet simple pyramid from one ``(B, in_ch, S/in_stride, S/in_stride)`` map.

    Args:
        in_ch: channels of the encoder's last map.
        in_stride: its stride (the patch size for plain ViTs).
        strides: output strides, each ``in_stride * 2**k`` for some integer ``k``.
        channels: output width.
    """

    def __init__(self, in_ch: int, in_stride: int, strides: tuple[int, ...], channels: int) -> None:
        super().__init__()
        self.rescale = nn.ModuleList()
        self.project = nn.ModuleList()
        for stride in strides:
            factor = in_stride / stride
            if factor <= 0 or not math.log2(factor).is_integer():
                raise UserError(
                    f"pyramid stride {stride} is not a power-of-2 multiple of the encoder "
                    f"stride {in_stride}; choose strides like {in_stride // 2}/{in_stride}/"
                    f"{in_stride * 2}"
                )
            module, ch = _rescale(in_ch, factor)
            self.rescale.append(module)
            self.project.append(
                nn.Sequential(
                    nn.Conv2d(ch, channels, 1, bias=False),
                    group_norm(channels),
                    nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                    group_norm(channels),
                )
            )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, in_ch, h, w)`` -> one ``(B, channels, ., .)`` map per output stride."""
        return [proj(rescale(x)) for rescale, proj in zip(self.rescale, self.project, strict=True)]


class SwinFPN(nn.Module):
    """Small FPN over hierarchical encoder stages.

    Args:
        in_channels: channels of each selected stage, finest first.
        channels: output width.
    """

    def __init__(self, in_channels: list[int], channels: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.output = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), group_norm(channels))
            for _ in in_channels
        )

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """Stage maps (finest first) -> ``(B, channels, ., .)`` maps at the same strides."""
        laterals = [conv(f) for conv, f in zip(self.lateral, feats, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):
            up = F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest")
            laterals[i - 1] = laterals[i - 1] + up
        return [out(x) for out, x in zip(self.output, laterals, strict=True)]


def swin_stage_indices(feature_info: list[dict], strides: tuple[int, ...]) -> list[int]:
    """Indices of the encoder stages whose reductions are exactly ``strides``."""
    reductions = [int(info["reduction"]) for info in feature_info]
    missing = [s for s in strides if s not in reductions]
    if missing:
        raise UserError(
            f"this encoder has stages at strides {reductions}; pyramid strides {missing} "
            "are not among them (set head.strides to a subset)"
        )
    return [reductions.index(s) for s in strides]
