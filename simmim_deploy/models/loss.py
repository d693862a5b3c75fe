"""SimMIM reconstruction loss: a pure function, kept out of ``SimMIM.forward`` so the model exports.

Loss (paper, section 3 / official ``models/simmim.py``)::

    M    = token mask upsampled to pixels, (B, 1, H, W)
    loss = sum(|x - x_rec| * M) / (sum(M) + 1e-5) / 3

Sums run over the whole batch (not a per-image mean), the target is the normalised input itself,
and the ``/ 3`` averages over colour channels because ``M`` has a single channel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pixel_mask(mask: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Upsample a token mask to pixels.

    Args:
        mask: ``(B, h, w)``, 1 = masked.
        patch_size: Pixels per token side.

    Returns:
        ``(B, 1, h * patch_size, w * patch_size)`` float mask.
    """
    m = mask.repeat_interleave(patch_size, 1).repeat_interleave(patch_size, 2)
    return m.unsqueeze(1).float()


def norm_targets(targets: torch.Tensor, patch_size: int = 47) -> torch.Tensor:
    """Normalise each pixel by the mean and unbiased std of its ``patch_size`` neighbourhood.

    The paper's "per-patch normalised target" ablation, computed as a sliding window (stride 1,
    border windows shrink) the way the official code does it.

    Args:
        targets: ``(B, C, H, W)``.
        patch_size: Odd window side (official default 47).

    Returns:
        ``(B, C, H, W)`` normalised targets.
    """
    if patch_size % 2 != 1:
        raise ValueError(f"norm_target_patch_size must be odd, got {patch_size}")
    pad = patch_size // 2
    pool = dict(kernel_size=patch_size, stride=1, padding=pad)
    mean = F.avg_pool2d(targets, count_include_pad=False, **pool)
    mean_sq = F.avg_pool2d(targets**2, count_include_pad=False, **pool)
    # number of real pixels under each (border-clipped) window, for Bessel's correction
    count = F.avg_pool2d(torch.ones_like(targets), count_include_pad=True, **pool) * patch_size**2
    var = (mean_sq - mean**2) * (count / (count - 1))
    var = var.clamp(min=0.0)
    return (targets - mean) / (var + 1e-6) ** 0.5


def simmim_loss(
    images: torch.Tensor,
    reconstruction: torch.Tensor,
    mask: torch.Tensor,
    patch_size: int,
    loss_type: str = "l1",
    norm_target: bool = False,
    norm_target_patch_size: int = 47,
) -> torch.Tensor:
    """Masked reconstruction loss on masked pixels only.

    Args:
        images: ``(B, 3, H, W)`` normalised input, the target.
        reconstruction: ``(B, 3, H, W)`` model output.
        mask: ``(B, H / patch_size, W / patch_size)``, 1 = masked.
        patch_size: Encoder patch size (pixels per mask token).
        loss_type: ``"l1"`` (default, paper) or ``"l2"`` (squared error).
        norm_target: Replace the target by :func:`norm_targets` of the input.
        norm_target_patch_size: Window for ``norm_target`` (odd).

    Returns:
        Scalar loss (float32).
    """
    target = images.float()
    if norm_target:
        target = norm_targets(target, norm_target_patch_size)
    diff = reconstruction.float() - target
    if loss_type == "l1":
        err = diff.abs()
    elif loss_type == "l2":
        err = diff.square()
    else:
        raise ValueError(f"loss_type must be 'l1' or 'l2', got {loss_type!r}")
    m = pixel_mask(mask, patch_size)
    return (err * m).sum() / (m.sum() + 1e-5) / images.shape[1]
