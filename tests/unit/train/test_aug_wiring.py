"""``aug`` presets reach the pre-training and classification transforms: count the variants.

With crops fixed to the whole (square, asymmetric) image, the only randomness left is the
preset's: ``none`` gives 1 distinct output, ``natural`` 2 (identity, mirror), ``orientation-free``
all 8 symmetries of the square.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from simmim_deploy.data.augment import build_finetune_transform
from simmim_deploy.data.transforms import PretrainTransform

DATA_CONFIG = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "interpolation": "bilinear"}
VARIANTS = {"none": 1, "natural": 2, "orientation-free": 8}


def _asymmetric(side: int = 16) -> Image.Image:
    pixels = np.arange(side * side * 3, dtype=np.uint8).reshape(side, side, 3) * 3
    return Image.fromarray(pixels, "RGB")


def _distinct(outputs: list[torch.Tensor]) -> int:
    return len({t.numpy().round(4).tobytes() for t in outputs})


@pytest.mark.parametrize("aug", list(VARIANTS))
def test_pretrain_transform_draws_the_preset(aug: str) -> None:
    transform = PretrainTransform(DATA_CONFIG, 16, scale=(1.0, 1.0), ratio=(1.0, 1.0), aug=aug)
    rng = np.random.default_rng(0)
    image = _asymmetric()
    assert _distinct([transform(image, rng) for _ in range(80)]) == VARIANTS[aug]


@pytest.mark.parametrize("aug", list(VARIANTS))
def test_finetune_transform_draws_the_preset(aug: str) -> None:
    torch.manual_seed(0)
    transform = build_finetune_transform(DATA_CONFIG, 16, "none", 0.0, None, 1.0, aug=aug)
    image = _asymmetric()
    assert _distinct([transform(image) for _ in range(80)]) == VARIANTS[aug]


def test_explicit_hflip_overrides_the_preset() -> None:
    torch.manual_seed(0)
    transform = build_finetune_transform(DATA_CONFIG, 16, "none", 0.0, 0.0, 1.0, aug="natural")
    assert _distinct([transform(_asymmetric()) for _ in range(40)]) == 1
