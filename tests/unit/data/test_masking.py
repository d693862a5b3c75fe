"""MaskGenerator: exact counts, cell alignment, seeding and refusals (SPEC section 1)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simmim_deploy import MaskGenerator
from simmim_deploy.core.errors import UserError


def _cells(mask: np.ndarray, scale: int) -> np.ndarray:
    """Collapse a token mask back to cells, asserting every cell is uniformly 0 or 1."""
    n = mask.shape[0] // scale
    blocks = mask.reshape(n, scale, n, scale).transpose(0, 2, 1, 3).reshape(n, n, -1)
    assert (blocks.min(-1) == blocks.max(-1)).all(), "a cell is partially masked"
    return blocks[..., 0]


@pytest.mark.parametrize(
    ("img", "cell", "patch", "grid", "cells", "masked"),
    [
        (192, 32, 4, 48, 36, 22),  # Swin recipe
        (224, 32, 16, 14, 49, 30),  # ViT recipe
        (64, 16, 8, 8, 16, 10),  # tiny test model
    ],
)
def test_counts_shape_alignment(img, cell, patch, grid, cells, masked):
    gen = MaskGenerator(img, mask_patch_size=cell, model_patch_size=patch, mask_ratio=0.6)
    assert gen.num_masked == masked == math.ceil(0.6 * cells)
    for seed in range(5):
        mask = gen(np.random.default_rng(seed))
        assert mask.shape == (grid, grid)
        assert mask.dtype == np.int64
        assert set(np.unique(mask)) <= {0, 1}
        cell_mask = _cells(mask, cell // patch)
        assert cell_mask.sum() == masked
        assert mask.sum() == masked * (cell // patch) ** 2


def test_seeded_repeatable_and_fresh_draws_differ():
    gen = MaskGenerator(192, 32, 4)
    a = gen(np.random.default_rng(123))
    b = gen(np.random.default_rng(123))
    assert np.array_equal(a, b)
    rng = np.random.default_rng(0)
    draws = {gen(rng).tobytes() for _ in range(20)}
    assert len(draws) > 15  # C(36, 22) possible masks: repeats would mean a broken draw
    assert any(not np.array_equal(gen(), gen()) for _ in range(3))  # unseeded: fresh entropy


def test_uniform_over_cells():
    gen = MaskGenerator(96, 32, 4, mask_ratio=0.5)  # 9 cells, 5 masked
    rng = np.random.default_rng(1)
    freq = np.mean([_cells(gen(rng), 8) for _ in range(3000)], axis=0)
    assert np.allclose(freq, 5 / 9, atol=0.04)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((200, 32, 4, 0.6), "multiple of mask patch size"),
        ((192, 30, 4, 0.6), "not a multiple of mask patch size"),
        ((192, 32, 12, 0.6), "multiple of the model's patch size"),
        ((192, 32, 4, 0.0), "between 0 and 1"),
        ((192, 32, 4, 1.0), "between 0 and 1"),
        ((192, 32, 4, -0.2), "between 0 and 1"),
        ((0, 32, 4, 0.6), "positive integer"),
    ],
)
def test_refuses_invalid_sizes(args, needle):
    with pytest.raises(UserError, match=needle):
        MaskGenerator(*args)


@pytest.mark.parametrize(
    ("img", "patch", "expected"),
    [(192, 4, 32), (224, 16, 32), (128, 16, 32), (64, 8, 16), (64, 4, 16), (32, 8, 8),
     (96, 16, 16), (16, 16, 16)],
)  # fmt: skip
def test_default_mask_patch_is_the_paper_cell_or_a_quarter_of_small_images(img, patch, expected):
    from simmim_deploy.data.masking import MaskGenerator, default_mask_patch_size

    size = default_mask_patch_size(img, patch)
    assert size == expected
    gen = MaskGenerator(img, size, patch, 0.6)  # always a valid cell for the generator
    assert gen.cells_per_side >= min(4, img // patch)


def test_pretraining_without_a_mask_cell_uses_the_small_image_default():
    from PIL import Image

    from simmim_deploy.data.builtin import BuiltinData
    from simmim_deploy.train.pretrain import PretrainConfig, _build

    images = BuiltinData([Image.new("RGB", (28, 28))] * 4, None, None, "four blank images")
    cfg = PretrainConfig(model="vit_nano_patch8_32", img_size=32)
    assert cfg.mask_patch_size is None
    _, dataset, _ = _build(cfg, images, None)
    assert dataset.mask_generator.mask_patch_size == 8  # 32 px cells would mask the whole image
    _, dataset, _ = _build(PretrainConfig(model="vit_nano_patch8_32", img_size=64), images, None)
    assert dataset.mask_generator.mask_patch_size == 16
