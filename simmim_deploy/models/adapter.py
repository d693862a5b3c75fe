"""The one place that knows timm internals: run an encoder to its final feature map.

SimMIM needs to blend a mask token into the tokens right after patch embedding and then run the
rest of the encoder unchanged. Rather than subclassing timm models and overriding ``forward``
(which is how the mae and SimMIM forks broke when timm moved), we call the model's own submodules
in the order its ``forward_features`` does. One small runner per family, chosen from a table.
``tests/unit/models/test_simmim.py`` checks every runner against timm's ``forward_features``, so
a timm upgrade that changes the order fails loudly instead of silently training something else.

Supported families: ``VisionTransformer`` (``vit_*``, incl. register tokens), ``Beit`` (``beit_*``),
``Eva`` (``eva02_*``, ...), ``SwinTransformer`` (``swin_*``) and ``SwinTransformerV2``
(``swinv2_*``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from timm.models import checkpoint_seq
from timm.models.beit import Beit
from timm.models.eva import Eva
from timm.models.swin_transformer import SwinTransformer
from timm.models.swin_transformer_v2 import SwinTransformerV2
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torch.utils.checkpoint import checkpoint

from simmim_deploy.core.errors import UserError

Blend = Callable[[torch.Tensor], torch.Tensor]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _run_vit(enc: VisionTransformer, images: torch.Tensor, blend: Blend) -> torch.Tensor:
    # blend before _pos_embed: the class/register tokens are prepended after masking
    x = blend(enc.patch_embed(images))
    x = enc._pos_embed(x)
    x = enc.patch_drop(x)
    x = enc.norm_pre(x)
    if enc.grad_checkpointing and not torch.jit.is_scripting():
        x = checkpoint_seq(enc.blocks, x)
    else:
        x = enc.blocks(x)
    return enc.norm(x)


def _run_beit(enc: Beit, images: torch.Tensor, blend: Blend) -> torch.Tensor:
    x = blend(enc.patch_embed(images))
    x = torch.cat((enc.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
    if enc.pos_embed is not None:
        x = x + enc.pos_embed
    x = enc.pos_drop(x)
    rel_pos_bias = enc.rel_pos_bias() if enc.rel_pos_bias is not None else None
    for blk in enc.blocks:
        if enc.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint(blk, x, shared_rel_pos_bias=rel_pos_bias, use_reentrant=False)
        else:
            x = blk(x, shared_rel_pos_bias=rel_pos_bias)
    return enc.norm(x)


def _run_eva(enc: Eva, images: torch.Tensor, blend: Blend) -> torch.Tensor:
    x = blend(enc.patch_embed(images))
    x, rope = enc._pos_embed(x)
    x = enc.norm_pre(x)
    mixed = getattr(enc, "rope_mixed", False) and rope is not None
    for i, blk in enumerate(enc.blocks):
        r = rope[i] if mixed else rope
        if enc.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint(blk, x, rope=r, use_reentrant=False)
        else:
            x = blk(x, rope=r)
    return enc.norm(x)


def _run_swin(enc: SwinTransformer | SwinTransformerV2, images: torch.Tensor, blend: Blend):
    # timm Swin keeps NHWC tokens throughout; stages handle their own grad checkpointing
    x = blend(enc.patch_embed(images))
    return enc.norm(enc.layers(x))


# family -> runner returning forward_features-style output (tokens for ViTs, NHWC for Swin)
_RUNNERS: tuple[tuple[type[nn.Module], Callable[..., torch.Tensor]], ...] = (
    (VisionTransformer, _run_vit),
    (Beit, _run_beit),
    (Eva, _run_eva),
    (SwinTransformer, _run_swin),
    (SwinTransformerV2, _run_swin),
)


def _runner(encoder: nn.Module) -> Callable[..., torch.Tensor]:
    for cls, fn in _RUNNERS:
        if isinstance(encoder, cls):
            return fn
    names = ", ".join(cls.__name__ for cls, _ in _RUNNERS)
    raise UserError(
        f"encoder type {type(encoder).__name__} is not supported by SimMIM; "
        f"use a timm model of one of these families: {names}"
    )


def check_supported(encoder: nn.Module) -> None:
    """Raise :class:`UserError` unless ``encoder`` belongs to a supported timm family."""
    _runner(encoder)


def is_swin(encoder: nn.Module) -> bool:
    """True for hierarchical (Swin / SwinV2) encoders, whose tokens are NHWC maps."""
    return isinstance(encoder, (SwinTransformer, SwinTransformerV2))


def patch_size(encoder: nn.Module) -> int:
    """Side in pixels of one token after patch embedding (the mask grid unit)."""
    size = encoder.patch_embed.patch_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def encoder_stride(encoder: nn.Module) -> int:
    """Total downsampling of the final feature map (16 for ViT/16, 32 for Swin)."""
    info = getattr(encoder, "feature_info", None)
    if info:
        return int(info[-1]["reduction"])
    return patch_size(encoder)


def num_features(encoder: nn.Module) -> int:
    """Channels of the final feature map."""
    return int(encoder.num_features)


def num_prefix_tokens(encoder: nn.Module) -> int:
    """Class + register tokens the ViT families prepend (0 for Swin)."""
    if is_swin(encoder):
        return 0
    return int(getattr(encoder, "num_prefix_tokens", 1))


def _to_map(encoder: nn.Module, feats: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    if feats.ndim == 4:  # NHWC (Swin)
        return feats.permute(0, 3, 1, 2).contiguous()
    stride = encoder_stride(encoder)
    h, w = images.shape[-2] // stride, images.shape[-1] // stride
    tokens = feats[:, num_prefix_tokens(encoder) :]
    return tokens.transpose(1, 2).reshape(feats.shape[0], feats.shape[-1], h, w)


def forward_feature_map(encoder: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Run a timm encoder and return its final feature map (no masking).

    Reused by the classification and detection heads.

    Args:
        encoder: A supported timm model (any ``num_classes``; the head is not run).
        images: ``(B, 3, H, W)`` normalised images.

    Returns:
        ``(B, num_features, H / encoder_stride, W / encoder_stride)``.
    """
    return _to_map(encoder, _runner(encoder)(encoder, images, _identity), images)


def forward_masked_feature_map(
    encoder: nn.Module, images: torch.Tensor, mask: torch.Tensor, mask_token: torch.Tensor
) -> torch.Tensor:
    """Like :func:`forward_feature_map`, with masked tokens replaced by ``mask_token``.

    Tokens are blended, not dropped: ``x * (1 - w) + mask_token * w`` with ``w`` the mask, so
    every token (visible or masked) goes through the full bidirectional encoder.

    Args:
        encoder: A supported timm model.
        images: ``(B, 3, H, W)``.
        mask: ``(B, H / patch_size, W / patch_size)``, 1 = masked (any numeric or bool dtype).
        mask_token: ``(1, 1, C)`` with ``C`` the patch-embedding width.

    Returns:
        ``(B, num_features, H / encoder_stride, W / encoder_stride)``.
    """

    def blend(x: torch.Tensor) -> torch.Tensor:
        # x: (B, L, C) for ViTs, (B, Hp, Wp, C) for Swin / dynamic-size ViTs
        grid = mask.shape[-2] * mask.shape[-1]
        tokens = x.shape[1] * x.shape[2] if x.ndim == 4 else x.shape[1]
        if mask.shape[0] != x.shape[0] or grid != tokens:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not match the {tokens} tokens "
                f"of a batch of {x.shape[0]} images (patch size {patch_size(encoder)})"
            )
        w = mask.to(x.dtype).reshape(*x.shape[:-1], 1)
        return x * (1.0 - w) + mask_token.to(x.dtype) * w

    return _to_map(encoder, _runner(encoder)(encoder, images, blend), images)
