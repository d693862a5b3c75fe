"""Tiny timm encoders registered for tests, the demo and CPU benchmarks.

They are ordinary timm models (``timm.create_model("vit_micro_patch8_64")``) with a
``pretrained_cfg`` that carries the input size and mean/std, so preprocessing is derived from the
model's data config exactly as for the full-size models. No weights exist for them: they are
always built with ``pretrained=False``.
"""

from __future__ import annotations

from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.swin_transformer import SwinTransformer
from timm.models.vision_transformer import VisionTransformer


def _cfg(size: int) -> dict[str, Any]:
    return dict(
        input_size=(3, size, size),
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
        interpolation="bicubic",
        crop_pct=0.875,
        num_classes=1000,
        first_conv="patch_embed.proj",
        classifier="head",
    )


# timm's register_model reads this module-level table (the timm convention for pretrained_cfg).
default_cfgs = generate_default_cfgs(
    {
        "vit_nano_patch8_32": _cfg(32),
        "vit_micro_patch8_64": _cfg(64),
        "swin_nano_patch4_window4_64": _cfg(64),
    }
)


def _build(cls: type, name: str, pretrained: bool, args: dict, kwargs: dict) -> Any:
    if pretrained:
        raise ValueError(f"{name} is a test model of simmim-deploy and has no pretrained weights")
    return build_model_with_cfg(cls, name, pretrained=False, **{**args, **kwargs})


@register_model
def vit_nano_patch8_32(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT for unit tests: 32 px, patch 8 (4x4 tokens), width 48, depth 2, 3 heads."""
    args = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, mlp_ratio=4.0)
    return _build(VisionTransformer, "vit_nano_patch8_32", pretrained, args, kwargs)


@register_model
def vit_micro_patch8_64(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT for the CPU demo: 64 px, patch 8 (8x8 tokens), width 96, depth 4, 3 heads."""
    args = dict(img_size=64, patch_size=8, embed_dim=96, depth=4, num_heads=3, mlp_ratio=4.0)
    return _build(VisionTransformer, "vit_micro_patch8_64", pretrained, args, kwargs)


@register_model
def swin_nano_patch4_window4_64(pretrained: bool = False, **kwargs: Any) -> SwinTransformer:
    """Swin for unit tests: 64 px, patch 4, window 4, widths 24..192, one block a stage."""
    args = dict(
        img_size=64,
        patch_size=4,
        window_size=4,
        embed_dim=24,
        depths=(1, 1, 1, 1),
        num_heads=(1, 2, 4, 8),
    )
    return _build(SwinTransformer, "swin_nano_patch4_window4_64", pretrained, args, kwargs)
