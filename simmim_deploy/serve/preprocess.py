"""Preprocessing in numpy/Pillow, identical to the training eval transform.

``resize_center_crop`` reproduces torchvision's eval pipeline on a PIL image exactly
(``Resize(resize, interpolation)`` on the shorter side, ``CenterCrop(crop)``, ``ToTensor``,
``Normalize(mean, std)``; timm's ``create_transform(is_training=False)`` builds the same with
``resize = floor(crop / crop_pct)``); a test compares both on real images of odd sizes.
``letterbox`` is the detection transform: the longer side to ``size``, padding at the bottom and
right, and it returns the scale needed to map boxes back to the original image.

Every parameter comes from the bundle's ``manifest["preprocess"]`` (:class:`PreprocessSpec`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from simmim_deploy.core.boxes import Letterbox, letterbox_geometry
from simmim_deploy.core.errors import UserError

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class PreprocessSpec:
    """The ``preprocess`` block of a bundle manifest, validated."""

    mode: str
    interpolation: str = "bicubic"
    resize: int = 0
    crop: int = 0
    size: int = 0
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    pad_value: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in ("resize_center_crop", "letterbox"):
            raise UserError(f"manifest preprocess.mode {self.mode!r} is not supported")
        if self.interpolation not in _RESAMPLE:
            raise UserError(f"manifest preprocess.interpolation {self.interpolation!r} unknown")
        if self.mode == "resize_center_crop" and not (self.resize >= 1 and self.crop >= 1):
            raise UserError("manifest preprocess needs positive 'resize' and 'crop'")
        if self.mode == "letterbox" and self.size < 1:
            raise UserError("manifest preprocess needs a positive 'size' for letterbox")

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> PreprocessSpec:
        """Build from ``manifest["preprocess"]`` (unknown keys are ignored: newer exporters)."""
        block = dict(manifest["preprocess"])
        known = {k: block[k] for k in cls.__dataclass_fields__ if k in block}
        for key in ("mean", "std"):
            if key in known:
                known[key] = tuple(float(v) for v in known[key])
        return cls(**known)

    @property
    def input_hw(self) -> tuple[int, int]:
        """Network input (height, width)."""
        side = self.crop if self.mode == "resize_center_crop" else self.size
        return side, side


def resize_center_crop(img: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """Torchvision-identical eval transform.

    Args:
        img: RGB image of any size.
        spec: resize (shorter side), crop, interpolation, scale, mean and std.

    Returns:
        float32 array ``(3, crop, crop)``, normalised.
    """
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = spec.resize, int(spec.resize * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), _RESAMPLE[spec.interpolation])
    return normalize(_center_crop(img, spec.crop), spec)


def _center_crop(img: Image.Image, crop: int) -> np.ndarray:
    """torchvision ``CenterCrop`` (zero padding first when the image is smaller); HWC uint8."""
    arr = np.asarray(img)
    h, w = arr.shape[:2]
    if crop > w or crop > h:
        pad_w, pad_h = max(crop - w, 0), max(crop - h, 0)
        arr = np.pad(arr, ((pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2), (0, 0)))
        h, w = arr.shape[:2]
    top = int(round((h - crop) / 2.0))
    left = int(round((w - crop) / 2.0))
    return arr[top : top + crop, left : left + crop]


def normalize(hwc: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 ``(H, W, 3)`` to float32 ``(3, H, W)``, bit-exact with ToTensor + Normalize."""
    x = hwc.astype(np.float32).transpose(2, 0, 1)
    divisor = 1.0 / spec.scale
    if abs(divisor - round(divisor)) < 1e-6:
        # ToTensor divides by 255; multiplying by 1/255 differs in the last bit.
        x = x / np.float32(round(divisor))
    else:
        x = x * np.float32(spec.scale)
    mean = np.asarray(spec.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(spec.std, dtype=np.float32)[:, None, None]
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def letterbox(img: Image.Image, spec: PreprocessSpec) -> tuple[np.ndarray, Letterbox]:
    """Scale the longer side to ``spec.size`` (aspect kept), pad bottom/right.

    Args:
        img: RGB image of any size.
        spec: size, interpolation, scale, mean, std and ``pad_value`` (after normalisation).

    Returns:
        float32 array ``(3, size, size)`` and the ``core.boxes.Letterbox`` that maps boxes back
        (the same geometry the detector was trained and evaluated with).
    """
    geometry = letterbox_geometry(img.width, img.height, spec.size)
    new_w, new_h = geometry.resized
    if (new_w, new_h) != img.size:
        img = img.resize((new_w, new_h), _RESAMPLE[spec.interpolation])
    out = np.full((3, spec.size, spec.size), spec.pad_value, dtype=np.float32)
    out[:, :new_h, :new_w] = normalize(np.asarray(img), spec)
    return out, geometry


def preprocess(img: Image.Image, spec: PreprocessSpec) -> tuple[np.ndarray, Letterbox | None]:
    """Dispatch on ``spec.mode``; returns ``(3, H, W)`` float32 and the letterbox (or None)."""
    if spec.mode == "letterbox":
        return letterbox(img, spec)
    return resize_center_crop(img, spec), None
