"""Flip/rot90 presets: boxes follow pixels, checked by re-measuring a drawn box on the mask."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch
from PIL import Image

from simmim_deploy.data.aug_presets import (
    PRESETS,
    FlipRot,
    RandomFlipRot,
    apply_to_array,
    apply_to_boxes,
    apply_to_pil,
    draw,
    get_preset,
)

ALL = [FlipRot(h, v, k) for h, v, k in itertools.product([False, True], [False, True], range(4))]


def _box_from_mask(mask: np.ndarray) -> list[float]:
    """Tight xyxy box (pixel edges) of the non-zero pixels of a ``(H, W)`` mask."""
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


@pytest.mark.parametrize("t", ALL, ids=lambda t: f"h{int(t.hflip)}v{int(t.vflip)}k{t.k}")
def test_boxes_follow_pixels_on_a_non_square_image(t: FlipRot) -> None:
    height, width = 37, 61
    boxes = np.array([[3, 5, 20, 11], [40, 0, 61, 30], [0, 30, 1, 37]], dtype=np.float32)
    moved = apply_to_boxes(boxes, width, height, t)
    for box, got in zip(boxes, moved, strict=True):
        mask = np.zeros((height, width), dtype=np.uint8)
        x1, y1, x2, y2 = box.astype(int)
        mask[y1:y2, x1:x2] = 1
        out = apply_to_array(mask, t)
        assert out.shape == ((width, height) if t.swaps_sides else (height, width))
        assert got.tolist() == _box_from_mask(out)


@pytest.mark.parametrize("t", ALL, ids=lambda t: f"h{int(t.hflip)}v{int(t.vflip)}k{t.k}")
def test_pil_numpy_and_tensor_layouts_agree(t: FlipRot) -> None:
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 255, size=(9, 14, 3), dtype=np.uint8)
    want = apply_to_array(hwc, t)
    got_pil = np.asarray(apply_to_pil(Image.fromarray(hwc), t))
    chw = torch.from_numpy(hwc).permute(2, 0, 1)
    got_torch = apply_to_array(chw, t, channels_first=True).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(got_pil, want)
    np.testing.assert_array_equal(got_torch, want)


def test_orientation_free_draws_all_eight_symmetries_and_natural_only_mirrors() -> None:
    rng = random.Random(0)
    pixel = np.arange(12).reshape(3, 4)  # asymmetric: each symmetry gives a distinct array
    seen = {apply_to_array(pixel, draw(PRESETS["orientation-free"], rng)).tobytes()
            for _ in range(400)}  # fmt: skip
    assert len(seen) == 8
    natural = [draw(PRESETS["natural"], rng) for _ in range(200)]
    assert not any(t.vflip or t.k for t in natural)
    assert 60 < sum(t.hflip for t in natural) < 140
    assert all(draw(PRESETS["none"], rng).identity for _ in range(50))


def test_draws_are_reproducible_from_the_generator() -> None:
    a = [draw(PRESETS["orientation-free"], np.random.default_rng(3)) for _ in range(5)]
    b = [draw(PRESETS["orientation-free"], np.random.default_rng(3)) for _ in range(5)]
    assert a == b
    gen = torch.Generator().manual_seed(1)
    first = [RandomFlipRot("orientation-free", gen)(Image.new("L", (4, 3))).size for _ in range(20)]
    assert {(4, 3), (3, 4)} == set(first)


def test_unknown_preset_names_the_choices() -> None:
    with pytest.raises(ValueError, match="natural, orientation-free, none"):
        get_preset("upright")
