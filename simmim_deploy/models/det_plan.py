"""Choose the detection head and its pyramid strides from the training boxes (like YOLO's
autoanchor, which fits anchors to the data before training).

Rules (sizes are ``sqrt(w * h)`` of the boxes after letterboxing to the network input):

- finest stride: the largest power of two at most a third of the small objects' size (10th
  percentile), so a small object spans about three cells or more; never below 4 (ViTDet's
  finest level, reached from a stride-16 ViT map by two 2x deconvolutions) and only strides the
  encoder can give (powers-of-two multiples of the patch size; a Swin stage reduction);
- FCOS: three levels from the finest (``f, 2f, 4f``; FCOS's size ranges spread objects over
  them), each dividing the input and at most half of it (finer ones added when coarser ones do
  not fit);
- scale jitter: none when objects are small (shrinking them loses them), else 0.75-1;
- head: ``centernet`` when objects are small for the input (median size at most a quarter of
  it) and several share an image (at least 2 on average): one stride-4 heatmap gives each small
  object its own peak, with no size ranges to assign and no centerness to learn, and it beats
  FCOS on such data (README, detection). Otherwise ``fcos``: one object per cell location
  across three scales suits large and varied objects.

The same small-and-dense test resolves ``--aug auto`` to ``orientation-free``
(:func:`simmim_deploy.data.aug_presets.resolve_aug`). The decisions and their reasons are
printed at the start of ``train detect`` and recorded in the run's ``config.yaml`` and the
checkpoint's ``meta["head"]``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from simmim_deploy.core.errors import UserError

MIN_STRIDE = 4
CELLS_PER_SMALL_OBJECT = 3
FCOS_LEVELS = 3
SMALL_SHARE = 0.25  # median size / input side at or below which objects count as small
DENSE_PER_IMAGE = 2.0
JITTER = 0.75  # smallest share of the input the longer side takes, objects of usual size


@dataclasses.dataclass(frozen=True)
class BoxStats:
    """Sizes of the training boxes in network-input pixels.

    Attributes:
        img_size: the network input side.
        num_boxes: boxes counted; num_images: images counted.
        p10, median, p90, largest: box sizes ``sqrt(w * h)``.
        smallest_side: the smallest box side (``min(w, h)``) at the 10th percentile.
    """

    img_size: int
    num_boxes: int
    num_images: int
    p10: float = 0.0
    median: float = 0.0
    p90: float = 0.0
    largest: float = 0.0
    smallest_side: float = 0.0

    @property
    def per_image(self) -> float:
        return self.num_boxes / max(self.num_images, 1)

    def describe(self) -> str:
        if not self.num_boxes:
            return f"no boxes in {self.num_images} training images"
        return (
            f"{self.num_boxes} objects in {self.num_images} images ({self.per_image:.1f} per "
            f"image), size {self.p10:.0f}-{self.p90:.0f} px (10-90%, median {self.median:.0f}) "
            f"at {self.img_size} px input"
        )


def box_statistics(records: list[Any], img_size: int) -> BoxStats:
    """:class:`BoxStats` of COCO image records (``boxes``, ``crowd``, ``width``, ``height``).

    Records without a stored size are read from the image header.
    """
    sizes, sides = [], []
    for rec in records:
        boxes = rec.boxes[~rec.crowd] if len(rec.boxes) else rec.boxes
        if not len(boxes):
            continue
        width, height = rec.width, rec.height
        if not (width and height):
            from PIL import Image

            with Image.open(rec.path) as im:
                width, height = im.size
        scale = img_size / max(width, height)
        wh = (boxes[:, 2:] - boxes[:, :2]) * scale
        sizes.append(np.sqrt(wh[:, 0] * wh[:, 1]))
        sides.append(wh.min(axis=1))
    if not sizes:
        return BoxStats(img_size, 0, len(records))
    s, m = np.concatenate(sizes), np.concatenate(sides)
    p10, median, p90 = (float(v) for v in np.percentile(s, [10, 50, 90]))
    return BoxStats(
        img_size, len(s), len(records), p10, median, p90, float(s.max()),
        float(np.percentile(m, 10)),
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class HeadPlan:
    """The chosen head, its strides and why."""

    type: str
    strides: tuple[int, ...]
    reason: str


def allowed_strides(patch: int | None, swin_reductions: tuple[int, ...] | None, img_size: int):
    """Strides the encoder can give and the input divides (ascending)."""
    if swin_reductions:
        candidates = set(swin_reductions)
    else:
        p = float(patch or 16)
        candidates = {int(p * 2.0**k) for k in range(-4, 5) if (p * 2.0**k).is_integer()}
    return tuple(sorted(s for s in candidates if s >= 2 and img_size % s == 0 and s <= img_size))


def plan_head(
    stats: BoxStats,
    allowed: tuple[int, ...],
    head: str = "auto",
    strides: tuple[int, ...] | None = None,
    hierarchical: bool = False,
) -> HeadPlan:
    """Pick the head type and strides (explicit choices are kept, never rewritten).

    Args:
        stats: training-box statistics.
        allowed: strides the encoder and input allow (:func:`allowed_strides`).
        head: ``auto``, ``fcos`` or ``centernet``.
        strides: explicit strides, or None to choose them.
        hierarchical: the encoder has stages (Swin): a CenterNet head then reads the finest
            level of an FPN over every stage from the finest stride up.

    Raises:
        UserError: an unknown head, or no stride the encoder allows.
    """
    if head not in ("auto", "fcos", "centernet"):
        raise UserError(f"unknown detection head '{head}' (choose from auto, fcos, centernet)")
    usable = [s for s in allowed if s >= MIN_STRIDE] or list(allowed)
    if not usable:
        raise UserError(f"no pyramid stride fits a {stats.img_size} px input for this encoder")
    small = is_small(stats)
    kind = head
    if head == "auto":
        kind = "centernet" if is_small_dense(stats) else "fcos"
        why = (
            f"small (median {stats.median:.0f} px <= {SMALL_SHARE:g} x input) and dense "
            f"({stats.per_image:.1f} per image): centernet"
            if kind == "centernet"
            else f"{'large' if not small else 'sparse'} objects: fcos"
        )
    else:
        why = f"head {head} as given"
    if strides is None:
        target = max(stats.p10 / CELLS_PER_SMALL_OBJECT, 1.0) if stats.num_boxes else 8.0
        finest = max([s for s in usable if s <= target] or [usable[0]])
        if kind == "centernet":
            strides = tuple(s for s in usable if s >= finest) if hierarchical else (finest,)
        else:
            levels = [s for s in usable if finest <= s <= stats.img_size // 2][:FCOS_LEVELS]
            finer = [s for s in usable if s < finest][::-1]  # too few coarser ones: add finer
            levels += finer[: FCOS_LEVELS - len(levels)]
            strides = tuple(sorted(levels)) or (finest,)
        s_text = "/".join(map(str, strides))
        why += (
            f"; strides {s_text} (finest: largest allowed <= {target:.1f} = small objects / 3, "
            f"at least {MIN_STRIDE})"
        )
    else:
        why += f"; strides {'/'.join(map(str, strides))} as given"
    return HeadPlan(kind, tuple(int(s) for s in strides), f"{stats.describe()}: {why}")


def is_small(stats: BoxStats) -> bool:
    """Objects small for the input: median size at most :data:`SMALL_SHARE` of it."""
    return stats.num_boxes > 0 and stats.median <= SMALL_SHARE * stats.img_size


def is_small_dense(stats: BoxStats) -> bool:
    """Small objects (:func:`is_small`), at least :data:`DENSE_PER_IMAGE` an image on average:
    what picks the CenterNet head and, under ``--aug auto``, the orientation-free preset."""
    return is_small(stats) and stats.per_image >= DENSE_PER_IMAGE


def choose_jitter(stats: BoxStats) -> tuple[float, str]:
    """Scale jitter for training: none for small objects (shrinking a 7 px object to 5 px
    takes away what little there is to see; measured on builtin:galaxies-det, README), the
    usual :data:`JITTER` otherwise."""
    if is_small(stats):
        return 1.0, "no scale jitter (small objects)"
    return JITTER, f"scale jitter {JITTER:g}-1"


def encoder_strides(
    model_name: str, img_size: int, model_kwargs: dict | None = None
) -> tuple[tuple[int, ...], bool]:
    """``allowed_strides`` of a timm encoder and whether it is hierarchical (Swin), read from a
    weightless (meta-device) instance."""
    import timm
    import torch

    from simmim_deploy.models import adapter

    kwargs = {"num_classes": 0, "img_size": img_size, **(model_kwargs or {})}
    kwargs.pop("drop_path_rate", None)
    with torch.device("meta"):
        enc = timm.create_model(model_name, pretrained=False, **kwargs)
    if adapter.is_swin(enc):
        reductions = tuple(int(i["reduction"]) for i in enc.feature_info)
        return allowed_strides(None, reductions, img_size), True
    return allowed_strides(adapter.encoder_stride(enc), None, img_size), False
