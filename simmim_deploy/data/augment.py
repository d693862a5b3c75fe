"""Fine-tuning augmentation through timm's ``create_transform`` (the official recipe's pipeline).

RandomResizedCrop -> horizontal flip -> RandAugment (``rand-m9-mstd0.5-inc1``) -> ToTensor ->
normalise -> random erasing, each switchable. Mean/std/interpolation come from the model's data
config. Mixup/CutMix act on batches and live with the loss (``train/classify.py``). The ``aug``
preset (:mod:`simmim_deploy.data.aug_presets`) decides flips and rotations: ``natural`` is the
official pipeline above; ``orientation-free`` puts a random flip/quarter turn (one of the 8
symmetries of the square) in front of the crop; ``none`` flips nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch
from PIL import Image, ImageOps


def _posterize_any_bits(img: Image.Image, bits_to_keep: int, **_: Any) -> Image.Image:
    """``ImageOps.posterize`` as Pillow < 13 did it: keeping 0 bits gives a black image."""
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits_to_keep)


def _pillow13_safe(transform: Any) -> Any:
    """Make timm's RandAugment posterize ops survive Pillow >= 13.

    timm's ``PosterizeIncreasing`` maps high magnitudes to 0 bits (TF/UDA convention: a black
    image); Pillow 13 now raises ``ValueError: bits must be between or equal to 1 and 8`` for 0.
    We swap the op's function on our own transform instance (timm 1.0.x; the module is not
    patched), keeping the recipe's behaviour.
    """
    for t in getattr(transform, "transforms", []):
        for op in getattr(t, "ops", []):
            if "Posterize" in getattr(op, "name", ""):
                op.aug_fn = _posterize_any_bits
    return transform


def build_finetune_transform(
    data_config: Mapping[str, Any],
    img_size: int,
    randaug: str | None = "rand-m9-mstd0.5-inc1",
    reprob: float = 0.25,
    hflip: float | None = 0.5,
    scale_min: float = 0.08,
    aug: str = "natural",
) -> Callable[[Image.Image], torch.Tensor]:
    """Training transform ``PIL RGB -> (3, img_size, img_size)`` normalised float tensor.

    Args:
        data_config: timm data config or checkpoint meta (``mean``, ``std``, ``interpolation``).
        img_size: output side.
        randaug: timm RandAugment string, or None / ``"none"`` to switch it off.
        reprob: random-erasing probability (pixel mode, as the official recipe).
        hflip: horizontal flip probability (None: the preset's).
        scale_min: lower crop-area bound of RandomResizedCrop.
        aug: augmentation preset name (``natural``, ``orientation-free``, ``none``).
    """
    from timm.data import create_transform

    from simmim_deploy.data.aug_presets import RandomFlipRot, get_preset

    preset = get_preset(aug)
    if hflip is not None:
        preset = dataclasses.replace(preset, hflip=hflip)
    symmetric = preset.vflip > 0 or preset.rot90  # flips and turns drawn together, up front

    use_randaug = randaug is not None and randaug.lower() != "none"
    transform = create_transform(
        input_size=(3, img_size, img_size),
        is_training=True,
        scale=(scale_min, 1.0),
        hflip=0.0 if symmetric else preset.hflip,
        color_jitter=None,  # the recipe relies on RandAugment for colour changes
        auto_augment=randaug if use_randaug else None,
        re_prob=reprob,
        re_mode="pixel",
        re_count=1,
        interpolation=str(data_config.get("interpolation", "bicubic")),
        mean=tuple(data_config["mean"]),
        std=tuple(data_config["std"]),
    )
    if symmetric:
        transform.transforms.insert(0, RandomFlipRot(preset))
    return _pillow13_safe(transform)
