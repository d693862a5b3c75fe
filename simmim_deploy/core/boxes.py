"""Letterbox geometry and box mapping in pure numpy (usable by the torch-free serving runtime).

Detection models see a *letterboxed* image: the longer side resized to ``img_size`` (aspect ratio
kept) and the rest padded on the bottom/right. Boxes predicted in network-input pixels map back
to the original image by undoing the padding offset and the scale, then clipping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Letterbox:
    """How one image was letterboxed.

    Attributes:
        scale: resize factor applied to the original image (new = old * scale).
        pad: ``(left, top)`` padding in network-input pixels (0, 0 for bottom/right padding).
        resized: ``(width, height)`` of the resized image before padding.
        original: ``(width, height)`` of the original image.
    """

    scale: float
    pad: tuple[int, int]
    resized: tuple[int, int]
    original: tuple[int, int]


def letterbox_geometry(width: int, height: int, img_size: int) -> Letterbox:
    """Geometry that fits a ``width x height`` image into an ``img_size`` square.

    The longer side becomes ``img_size``; padding goes bottom/right, so ``pad`` is ``(0, 0)``.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    scale = img_size / max(width, height)
    new_w = min(img_size, max(1, round(width * scale)))
    new_h = min(img_size, max(1, round(height * scale)))
    return Letterbox(scale=scale, pad=(0, 0), resized=(new_w, new_h), original=(width, height))


def boxes_to_original(
    boxes: np.ndarray,
    letterbox_scale: float,
    pad: tuple[float, float] = (0.0, 0.0),
    original_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Map xyxy boxes from network-input pixels back to original image pixels.

    Args:
        boxes: ``(..., 4)`` xyxy boxes in network-input pixels.
        letterbox_scale: the resize factor used by the letterbox (new = old * scale).
        pad: ``(left, top)`` padding added before the image in network-input pixels.
        original_size: ``(width, height)`` of the original image; boxes are clipped to it.

    Returns:
        ``(..., 4)`` float32 xyxy boxes in original image pixels.
    """
    out = np.asarray(boxes, dtype=np.float32).copy()
    out[..., 0::2] -= pad[0]
    out[..., 1::2] -= pad[1]
    out /= np.float32(letterbox_scale)
    if original_size is not None:
        width, height = original_size
        out[..., 0::2] = np.clip(out[..., 0::2], 0, width)
        out[..., 1::2] = np.clip(out[..., 1::2], 0, height)
    return out


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """COCO ``[x, y, w, h]`` -> ``[x1, y1, x2, y2]``; shape ``(..., 4)`` kept."""
    b = np.asarray(boxes, dtype=np.float32)
    return np.concatenate([b[..., :2], b[..., :2] + b[..., 2:4]], axis=-1)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """``[x1, y1, x2, y2]`` -> COCO ``[x, y, w, h]``; shape ``(..., 4)`` kept."""
    b = np.asarray(boxes, dtype=np.float32)
    return np.concatenate([b[..., :2], b[..., 2:4] - b[..., :2]], axis=-1)
