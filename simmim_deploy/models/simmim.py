"""SimMIM: an unmodified timm encoder, a learnable mask token and a one-layer pixel decoder.

The encoder is stored as ``self.encoder`` exactly as ``timm.create_model(name, num_classes=0)``
builds it, so ``model.encoder.state_dict()`` loads into timm with ``strict=True``. Masking goes
through :mod:`simmim_deploy.models.adapter`. The loss is a separate pure function
(:func:`simmim_deploy.models.loss.simmim_loss`) so that the module also exports.
"""

from __future__ import annotations

from typing import Any

import timm
import torch
from timm.data import resolve_data_config
from torch import nn

from simmim_deploy.core.config import suggest
from simmim_deploy.core.errors import UserError
from simmim_deploy.core.families import model_family
from simmim_deploy.models import adapter
from simmim_deploy.models import registry as _registry  # noqa: F401  (registers tiny models)


class SimMIM(nn.Module):
    """Masked image modelling wrapper around a timm encoder.

    Args:
        encoder: A timm model of a family supported by the adapter, built with ``num_classes=0``.
        model_name: The timm name the encoder was built from (recorded in checkpoints).

    Attributes:
        encoder: The timm model, untouched.
        mask_token: ``(1, 1, C)`` learnable token, C the patch-embedding width.
        decoder: ``Conv2d(num_features, encoder_stride**2 * 3, 1)`` + ``PixelShuffle(stride)``.
        patch_size: Token side in pixels (mask grid unit).
        encoder_stride: Downsampling of the final feature map.
        img_size: Input side the encoder was built for.
        data_config: timm data config (mean, std, interpolation, input_size).
    """

    def __init__(self, encoder: nn.Module, model_name: str = "") -> None:
        super().__init__()
        adapter.check_supported(encoder)
        self.encoder = encoder
        self.model_name = model_name or getattr(encoder, "default_cfg", {}).get("architecture", "")
        self.patch_size = adapter.patch_size(encoder)
        self.encoder_stride = adapter.encoder_stride(encoder)
        self.num_features = adapter.num_features(encoder)
        img = encoder.patch_embed.img_size
        self.img_size = int(img[0] if isinstance(img, (tuple, list)) else img)
        self.data_config = dict(resolve_data_config({}, model=encoder))
        # the pretrained_cfg still says the registered size; record the size actually built
        self.data_config["input_size"] = (3, self.img_size, self.img_size)
        embed_dim = int(getattr(encoder, "embed_dim", None) or _patch_embed_width(encoder))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.decoder = nn.Sequential(
            nn.Conv2d(self.num_features, self.encoder_stride**2 * 3, kernel_size=1),
            nn.PixelShuffle(self.encoder_stride),
        )

    def forward(self, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Reconstruct the images from a masked view.

        Args:
            images: ``(B, 3, H, W)`` normalised images.
            mask: ``(B, H / patch_size, W / patch_size)``, 1 = masked.

        Returns:
            Reconstruction ``(B, 3, H, W)`` in the normalised input space.
        """
        z = adapter.forward_masked_feature_map(self.encoder, images, mask, self.mask_token)
        return self.decoder(z)

    def forward_feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """Unmasked encoder feature map ``(B, num_features, H / stride, W / stride)``."""
        return adapter.forward_feature_map(self.encoder, images)

    def no_weight_decay(self) -> set[str]:
        """Parameter names exempt from weight decay (the encoder's own set plus the mask token)."""
        names = {"mask_token"}
        if hasattr(self.encoder, "no_weight_decay"):
            names |= {f"encoder.{n}" for n in self.encoder.no_weight_decay()}
        return names


def _patch_embed_width(encoder: nn.Module) -> int:
    proj = getattr(encoder.patch_embed, "proj", None)
    if proj is None:
        raise UserError(f"cannot find the patch embedding width of {type(encoder).__name__}")
    return int(proj.out_channels)


def default_drop_path_rate(model_name: str) -> float:
    """The official recipe's stochastic depth: 0.0 for Swin, 0.1 for ViT-style encoders."""
    return 0.0 if model_family(model_name) == "swin" else 0.1


def build_simmim(
    model_name: str,
    img_size: int | None = None,
    drop_path_rate: float | None = None,
    **timm_kwargs: Any,
) -> SimMIM:
    """Build a randomly initialised SimMIM model around ``timm.create_model(model_name)``.

    Args:
        model_name: Any timm model of a supported family, e.g. ``vit_small_patch16_224``,
            ``beit_base_patch16_224``, ``swin_base_patch4_window7_224`` or the tiny test models.
        img_size: Input side; None keeps the model's default.
        drop_path_rate: Stochastic depth; None uses the official default for the family.
        **timm_kwargs: Passed to ``timm.create_model`` (e.g. ``window_size=6`` for Swin at 192).

    Returns:
        The :class:`SimMIM` model (weights never downloaded).

    Raises:
        UserError: Unknown model name (with a close match), or an unsupported family.
    """
    if not timm.is_model(model_name):
        raise UserError(
            f"unknown timm model '{model_name}'{suggest(model_name, timm.list_models())}; "
            "list them with: python -c \"import timm; print(timm.list_models('vit*'))\""
        )
    kwargs = dict(timm_kwargs)
    kwargs["drop_path_rate"] = (
        default_drop_path_rate(model_name) if drop_path_rate is None else drop_path_rate
    )
    if img_size is not None:
        kwargs["img_size"] = img_size
    try:
        encoder = timm.create_model(model_name, pretrained=False, num_classes=0, **kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise UserError(f"cannot build {model_name} with {kwargs}: {exc}") from None
    return SimMIM(encoder, model_name=model_name)
