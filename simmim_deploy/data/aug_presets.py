"""Augmentation presets by how the imagery is oriented: ``natural | orientation-free | none``.

- ``natural``: photos, where up is up: horizontal flip only (the usual default).
- ``orientation-free``: imagery with no canonical orientation (microscopy, aerial, satellite,
  scanned documents seen from any side): horizontal and vertical flips and random 90-degree
  rotations, i.e. a uniform draw from the 8 symmetries of the square.
- ``none``: data whose meaning changes when mirrored or turned (digits, text): no flips, no
  rotations.
- ``auto`` (the train commands' default) is not a preset: :func:`resolve_aug` turns it into one
  before anything is built, and the run records the resolved name.

A draw is a :class:`FlipRot` (flip left-right, flip top-bottom, then ``k`` quarter turns
counter-clockwise). Pure functions apply one draw to an image (PIL, ``(H, W, ...)`` numpy array
or ``(..., H, W)`` tensor) and to its xyxy boxes, so detection data moves boxes with pixels.
Randomness only comes from the generator passed in.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Protocol

import numpy as np

AugName = Literal["natural", "orientation-free", "none"]
AugChoice = Literal["auto", "natural", "orientation-free", "none"]


@dataclasses.dataclass(frozen=True)
class AugPreset:
    """Which geometric augmentations a preset draws.

    Attributes:
        name: the preset name.
        hflip: probability of a horizontal (left-right) flip.
        vflip: probability of a vertical (top-bottom) flip.
        rot90: draw 0-3 quarter turns uniformly.
    """

    name: str
    hflip: float
    vflip: float
    rot90: bool


PRESETS: dict[str, AugPreset] = {
    "natural": AugPreset("natural", hflip=0.5, vflip=0.0, rot90=False),
    "orientation-free": AugPreset("orientation-free", hflip=0.5, vflip=0.5, rot90=True),
    "none": AugPreset("none", hflip=0.0, vflip=0.0, rot90=False),
}


def get_preset(name: str) -> AugPreset:
    """The preset called ``name``.

    Raises:
        ValueError: unknown name (the message lists the presets).
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown augmentation preset '{name}' (choose from {', '.join(PRESETS)})"
        ) from None


def resolve_aug(
    name: str, small_dense: bool | None = None, hflip: float | None = None
) -> tuple[str, str]:
    """The preset ``name`` stands for, and why, as the run prints it.

    ``auto`` becomes ``orientation-free`` when the training boxes are small and dense for the
    input (``small_dense``: the statistics that pick the CenterNet head,
    :func:`simmim_deploy.models.det_plan.is_small_dense`): many small objects per image is what
    imagery seen from above looks like (microscopy, aerial, astronomy), which has no up
    direction, and flips plus quarter turns multiply a few labelled tiles by 8 (the CenterNet
    reference of issue 10 drops from 0.82-0.88 to about 0.66 mAP50 without them). Everything
    else, and every command without boxes (``small_dense`` None: classification,
    pre-training), gets ``natural``, the official pipelines' horizontal flip. A run given
    ``hflip`` 0 has said that a mirrored image means something else (digits, text): ``auto``
    then turns nothing at all (``none``), since flips and quarter turns together mirror too. A
    preset name is returned unchanged.

    Raises:
        ValueError: an unknown name (the message lists the choices).
    """
    if name != "auto":
        return get_preset(name).name, "as given"
    if hflip == 0:
        return "none", "auto: --hflip 0 given (mirrored images mean something else)"
    if small_dense:
        return "orientation-free", "auto: small dense objects, imagery seen from above"
    why = "auto: no boxes to judge by" if small_dense is None else "auto: objects not small+dense"
    return "natural", why


@dataclasses.dataclass(frozen=True)
class FlipRot:
    """One drawn geometric transform: flips first, then ``k`` quarter turns counter-clockwise.

    Attributes:
        hflip: mirror left-right.
        vflip: mirror top-bottom.
        k: quarter turns counter-clockwise (as ``np.rot90`` / PIL ``ROTATE_90``), 0-3.
    """

    hflip: bool = False
    vflip: bool = False
    k: int = 0

    @property
    def identity(self) -> bool:
        return not (self.hflip or self.vflip or self.k % 4)

    @property
    def swaps_sides(self) -> bool:
        """True when width and height trade places (an odd number of quarter turns)."""
        return self.k % 2 == 1


class _Uniform(Protocol):
    def random(self) -> float: ...


def draw(preset: AugPreset, rng: _Uniform) -> FlipRot:
    """Draw one transform of ``preset``.

    Args:
        preset: what may be drawn.
        rng: anything with ``random() -> float in [0, 1)``: ``random.Random`` or
            ``numpy.random.Generator``. Three numbers are always consumed, whatever the preset,
            so changing a preset does not shift later draws of the same generator.
    """
    u_h, u_v, u_k = float(rng.random()), float(rng.random()), float(rng.random())
    return FlipRot(
        hflip=u_h < preset.hflip,
        vflip=u_v < preset.vflip,
        k=min(int(u_k * 4), 3) if preset.rot90 else 0,
    )


def apply_to_boxes(boxes: np.ndarray, width: float, height: float, t: FlipRot) -> np.ndarray:
    """Move xyxy boxes as :func:`apply_to_image` moves the pixels of a ``width x height`` image.

    Coordinates are continuous pixel edges (a box ``[0, 0, W, H]`` covers the whole image).

    Args:
        boxes: ``(G, 4)`` xyxy boxes.
        width: image width before the transform.
        height: image height before the transform.
        t: the transform.

    Returns:
        ``(G, 4)`` xyxy boxes in the transformed image (``height x width`` when
        ``t.swaps_sides``).
    """
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    w, h = np.float32(width), np.float32(height)
    if t.hflip:
        b[:, [0, 2]] = w - b[:, [2, 0]]
    if t.vflip:
        b[:, [1, 3]] = h - b[:, [3, 1]]
    for _ in range(t.k % 4):
        # Counter-clockwise quarter turn: (x, y) -> (y, w - x); the new image is h wide, w tall.
        b = np.stack([b[:, 1], w - b[:, 2], b[:, 3], w - b[:, 0]], axis=1)
        w, h = h, w
    return b


def apply_to_array(image: Any, t: FlipRot, channels_first: bool = False) -> Any:
    """Apply ``t`` to a numpy array or torch tensor.

    Args:
        image: ``(H, W, ...)`` array (``channels_first=False``) or ``(..., H, W)`` array/tensor.
        t: the transform.
        channels_first: the last two axes are ``(H, W)`` (torch layout).

    Returns:
        The transformed image, same type and layout (a copy for numpy).
    """
    y_ax, x_ax = (-2, -1) if channels_first else (0, 1)
    if isinstance(image, np.ndarray):
        out = image
        if t.hflip:
            out = np.flip(out, axis=x_ax)
        if t.vflip:
            out = np.flip(out, axis=y_ax)
        return np.ascontiguousarray(np.rot90(out, t.k % 4, axes=(y_ax, x_ax)))
    import torch

    out = image
    if t.hflip:
        out = torch.flip(out, dims=(x_ax,))
    if t.vflip:
        out = torch.flip(out, dims=(y_ax,))
    return torch.rot90(out, t.k % 4, dims=(y_ax, x_ax)) if t.k % 4 else out


def apply_to_pil(image: Any, t: FlipRot) -> Any:
    """Apply ``t`` to a PIL image (exact pixel moves, no resampling)."""
    from PIL import Image

    if t.hflip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if t.vflip:
        image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    turns = {1: Image.Transpose.ROTATE_90, 2: Image.Transpose.ROTATE_180}
    turns[3] = Image.Transpose.ROTATE_270
    k = t.k % 4
    return image.transpose(turns[k]) if k else image


class RandomFlipRot:
    """Image transform (PIL in, PIL out) drawing from a preset, for classification/pre-training.

    Args:
        preset: a preset or its name.
        generator: optional ``torch.Generator``; by default torch's global generator, which the
            DataLoader seeds per worker.
    """

    def __init__(self, preset: AugPreset | str, generator: Any = None) -> None:
        self.preset = get_preset(preset) if isinstance(preset, str) else preset
        self.generator = generator

    def random(self) -> float:
        import torch

        return float(torch.rand((), generator=self.generator))

    def __call__(self, image: Any) -> Any:
        return apply_to_pil(image, draw(self.preset, self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(preset={self.preset.name!r})"
