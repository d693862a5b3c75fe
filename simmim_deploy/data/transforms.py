"""Image transforms built from a timm data config (``timm.data.resolve_data_config``).

- :class:`PretrainTransform`: SimMIM pre-training, exactly the official pipeline:
  RandomResizedCrop(img, scale=(0.67, 1.0), ratio=(3/4, 4/3)) -> horizontal flip -> ToTensor ->
  normalise. Nothing else (with ``aug="natural"``; other presets change the flip step only).
  Its randomness comes only from the ``numpy.random.Generator`` passed in, so a sample seeded
  by ``(seed, epoch, index)`` is identical in any worker and after resume.
- :func:`build_eval_transform`: resize the shorter side to ``img / crop_pct`` (bicubic by
  default), centre crop ``img``, ToTensor, normalise (the fine-tuning evaluation transform).

Mean/std/interpolation/crop_pct always come from the model's data config, never constants.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from simmim_deploy.data.aug_presets import apply_to_pil, draw, get_preset

PRETRAIN_SCALE = (0.67, 1.0)
PRETRAIN_RATIO = (3.0 / 4.0, 4.0 / 3.0)


def _interpolation(name: str) -> InterpolationMode:
    try:
        return InterpolationMode(name)
    except ValueError:
        return InterpolationMode.BICUBIC


def _img_size(data_config: Mapping[str, Any], img_size: int | None) -> int:
    return int(img_size if img_size is not None else data_config["input_size"][-1])


def sample_crop(
    width: int,
    height: int,
    rng: np.random.Generator,
    scale: Sequence[float] = PRETRAIN_SCALE,
    ratio: Sequence[float] = PRETRAIN_RATIO,
) -> tuple[int, int, int, int]:
    """Random-resized-crop box ``(top, left, h, w)``, the torchvision algorithm on ``rng``.

    Ten tries at an area in ``scale`` (fraction of the image) and an aspect ratio drawn
    log-uniformly from ``ratio``; failing that, the largest centred crop within ``ratio``.
    """
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class PretrainTransform:
    """SimMIM pre-training transform on an explicit random generator.

    Args:
        data_config: timm data config (``mean``, ``std``, ``input_size``).
        img_size: output side; defaults to the data config's input size.
        scale: crop area range (fraction of the image).
        ratio: crop aspect-ratio range.
        aug: flips/rotations preset (:mod:`simmim_deploy.data.aug_presets`); ``natural`` is the
            official horizontal flip.

    Call with ``(image, rng)``; returns a ``(3, img_size, img_size)`` float32 tensor,
    normalised.
    """

    def __init__(
        self,
        data_config: Mapping[str, Any],
        img_size: int | None = None,
        scale: Sequence[float] = PRETRAIN_SCALE,
        ratio: Sequence[float] = PRETRAIN_RATIO,
        aug: str = "natural",
    ) -> None:
        self.preset = get_preset(aug)
        self.img_size = _img_size(data_config, img_size)
        self.mean = tuple(float(m) for m in data_config["mean"])
        self.std = tuple(float(s) for s in data_config["std"])
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> torch.Tensor:
        top, left, h, w = sample_crop(image.width, image.height, rng, self.scale, self.ratio)
        # torchvision's RandomResizedCrop default (bilinear), as the official pipeline
        out = TF.resized_crop(
            image,
            top,
            left,
            h,
            w,
            [self.img_size, self.img_size],
            interpolation=InterpolationMode.BILINEAR,
            antialias=True,
        )
        if self.preset.vflip or self.preset.rot90:
            out = apply_to_pil(out, draw(self.preset, rng))
        elif rng.random() < self.preset.hflip:  # one draw: natural is the official stream
            out = TF.hflip(out)
        return TF.normalize(TF.to_tensor(out), self.mean, self.std)

    def __repr__(self) -> str:
        return (
            f"PretrainTransform(img_size={self.img_size}, scale={self.scale}, "
            f"ratio={self.ratio}, mean={self.mean}, std={self.std})"
        )


def build_eval_transform(
    data_config: Mapping[str, Any], img_size: int | None = None
) -> Callable[[Image.Image], torch.Tensor]:
    """Evaluation transform: resize to ``img / crop_pct``, centre crop ``img``, normalise.

    Args:
        data_config: timm data config (``mean``, ``std``, ``interpolation``, ``crop_pct``).
        img_size: output side; defaults to the data config's input size.

    Returns:
        A callable PIL RGB image -> ``(3, img_size, img_size)`` float32 tensor.
    """
    from torchvision import transforms as T

    size = _img_size(data_config, img_size)
    crop_pct = float(data_config.get("crop_pct") or 0.875)
    resize = int(math.floor(size / crop_pct))
    interpolation = _interpolation(str(data_config.get("interpolation", "bicubic")))
    return T.Compose(
        [
            T.Resize(resize, interpolation=interpolation, antialias=True),
            T.CenterCrop(size),
            T.ToTensor(),
            T.Normalize(tuple(data_config["mean"]), tuple(data_config["std"])),
        ]
    )


def denormalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Undo normalisation: ``(B, 3, H, W)`` normalised -> ``[0, 1]`` clamped."""
    m = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images * s + m).clamp(0.0, 1.0)
