"""Model families by timm name, for the recipe defaults that differ per family (torch-free)."""

from __future__ import annotations


def model_family(model_name: str) -> str:
    """``swin`` (Swin / SwinV2: hierarchical stages) or ``vit`` (ViT-style: vit, deit, beit, eva).

    The one name-based family rule; layer-wise LR decay and drop-path defaults key on it (a
    built module is told apart by ``models.adapter.is_swin``).

    Example:
        >>> model_family("swin_base_patch4_window7_224"), model_family("hf-hub:x/beit_base")
        ('swin', 'vit')
    """
    return "swin" if model_name.rsplit("/", 1)[-1].startswith("swin") else "vit"
