"""COCO-format detection data: read and validate, letterbox, light augmentation, collate.

Layout: ``ROOT/annotations.json`` plus ``ROOT/images/`` (``file_name`` is relative to
``images/``; ``ROOT/`` itself is tried too). Category ids map to contiguous class indices in
ascending id order. Crowd annotations (``iscrowd: 1``) are kept for evaluation (as ignore
regions) but not trained on. Structural problems are one-line :class:`UserError`; boxes with no
area are dropped and counted; unreadable images are skipped and counted in a
:class:`~simmim_deploy.data.images.SkipLog` (in training another image stands in, in evaluation
the image is left out of the scores).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from simmim_deploy.core.boxes import xywh_to_xyxy
from simmim_deploy.core.errors import UserError
from simmim_deploy.core.preprocess import PreprocessSpec
from simmim_deploy.core.preprocess import letterbox as letterbox_image
from simmim_deploy.data.aug_presets import apply_to_boxes, apply_to_pil, draw, get_preset
from simmim_deploy.data.images import BadImageError, SkipLog, load_rgb

log = logging.getLogger(__name__)

ANNOTATIONS = "annotations.json"


@dataclasses.dataclass(frozen=True)
class CocoImage:
    """One image and its objects (boxes in original pixels, xyxy)."""

    image_id: int
    path: Path
    width: int
    height: int
    boxes: np.ndarray  # (G, 4) float32 xyxy
    labels: np.ndarray  # (G,) int64 contiguous class index
    crowd: np.ndarray  # (G,) bool


@dataclasses.dataclass(frozen=True)
class CocoDataset:
    """A COCO detection set held as plain records.

    Attributes:
        images: one record per image, in file order.
        class_names: names in class-index order.
        category_ids: COCO category id of each class index.
        source: the annotation file.
        dropped_boxes: annotations dropped because their box had no area.
    """

    images: list[CocoImage]
    class_names: list[str]
    category_ids: list[int]
    source: Path
    dropped_boxes: int = 0


def _fail(path: Path, what: str) -> UserError:
    return UserError(f"{path}: {what}")


def read_coco(root: str | Path, images_dir: str | Path | None = None) -> CocoDataset:
    """Read and validate a COCO detection folder (or an annotation file).

    Args:
        root: folder holding ``annotations.json`` and ``images/``, or the JSON file itself.
        images_dir: folder ``file_name`` is relative to; default ``ROOT/images`` (or ``ROOT``).

    Raises:
        UserError: missing file, invalid JSON, missing keys, unknown ids, bad boxes.
    """
    root = Path(root)
    ann_path = root if root.is_file() else root / ANNOTATIONS
    if not ann_path.is_file():
        raise UserError(f"no {ANNOTATIONS} in {root} (COCO layout: annotations.json + images/)")
    try:
        doc = json.loads(ann_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _fail(ann_path, f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise _fail(ann_path, "must be a JSON object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise _fail(
                ann_path, f"missing list '{key}' (COCO needs images/annotations/categories)"
            )
    base = Path(images_dir) if images_dir else ann_path.parent / "images"
    if not base.is_dir():
        base = ann_path.parent
    cats = _categories(doc["categories"], ann_path)
    cat_ids = sorted(cats)
    index = {cid: i for i, cid in enumerate(cat_ids)}
    per_image, dropped = _annotations(doc["annotations"], index, ann_path)
    images = []
    for rec in doc["images"]:
        try:
            image_id, name = int(rec["id"]), str(rec["file_name"])
            width, height = int(rec.get("width", 0)), int(rec.get("height", 0))
        except (KeyError, TypeError, ValueError):
            raise _fail(ann_path, f"image entry {rec!r:.80} needs id and file_name") from None
        boxes, labels, crowd = per_image.pop(image_id, ([], [], []))
        images.append(
            CocoImage(
                image_id=image_id,
                path=base / name,
                width=width,
                height=height,
                boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                labels=np.asarray(labels, dtype=np.int64),
                crowd=np.asarray(crowd, dtype=bool),
            )
        )
    if per_image:
        bad = next(iter(per_image))
        raise _fail(ann_path, f"annotation refers to image_id {bad}, which is not in 'images'")
    if not images:
        raise _fail(ann_path, "holds no images")
    if dropped:
        log.warning("%s: dropped %d annotations whose box has no area", ann_path, dropped)
    names = [cats[c] for c in cat_ids]
    return CocoDataset(images, names, cat_ids, ann_path, dropped)


def _categories(entries: list[Any], path: Path) -> dict[int, str]:
    cats: dict[int, str] = {}
    for cat in entries:
        try:
            cid, name = int(cat["id"]), str(cat["name"])
        except (KeyError, TypeError, ValueError):
            raise _fail(path, f"category {cat!r:.80} needs an integer id and a name") from None
        if cid in cats:
            raise _fail(path, f"category id {cid} appears twice")
        cats[cid] = name
    if not cats:
        raise _fail(path, "has no categories")
    return cats


def _annotations(
    entries: list[Any], index: dict[int, int], path: Path
) -> tuple[dict[int, tuple[list, list, list]], int]:
    per_image: dict[int, tuple[list, list, list]] = {}
    dropped = 0
    for ann in entries:
        try:
            image_id, cid = int(ann["image_id"]), int(ann["category_id"])
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError):
            raise _fail(
                path, f"annotation {ann!r:.80} needs image_id, category_id, bbox [x,y,w,h]"
            ) from None
        if cid not in index:
            raise _fail(path, f"annotation uses category_id {cid}, which is not in 'categories'")
        if not (w > 0 and h > 0):
            dropped += 1
            continue
        boxes, labels, crowd = per_image.setdefault(image_id, ([], [], []))
        boxes.append(xywh_to_xyxy(np.array([x, y, w, h], dtype=np.float32)))
        labels.append(index[cid])
        crowd.append(bool(ann.get("iscrowd", 0)))
    return per_image, dropped


def letterbox(
    image: Image.Image,
    boxes: np.ndarray,
    img_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    fill: float = 1.0,
) -> tuple[torch.Tensor, np.ndarray, float]:
    """Resize the longer side to ``fill * img_size``, pad bottom/right to ``img_size``, normalise.

    Args:
        image: RGB image.
        boxes: ``(G, 4)`` xyxy in original pixels.
        img_size: square output side.
        mean: per-channel mean (0..1 scale); padding is the mean colour (0 after normalising).
        std: per-channel std.
        fill: share of ``img_size`` the longer side takes (< 1 for scale-jitter augmentation).

    Returns:
        ``(3, img_size, img_size)`` float tensor, ``(G, 4)`` boxes in input pixels, the scale.
    """
    # The one letterbox the export gate and the serving runtime apply too (core.preprocess).
    spec = PreprocessSpec("letterbox", "bilinear", size=img_size, mean=mean, std=std)
    out, geo = letterbox_image(image, spec, fill)
    return torch.from_numpy(out), boxes.astype(np.float32) * np.float32(geo.scale), geo.scale


class DetectionDataset(torch.utils.data.Dataset):
    """Letterboxed samples of a :class:`CocoDataset`.

    Args:
        data: the records.
        img_size: network input side.
        mean: normalisation mean (from the encoder's timm data config).
        std: normalisation std.
        train: apply the augmentation preset and scale jitter; substitute unreadable images.
        skip_log: where unreadable files are recorded.
        jitter: smallest share of ``img_size`` the longer side takes in training.
        hflip: probability of a horizontal flip in training (None: the preset's).
        aug: augmentation preset (:mod:`simmim_deploy.data.aug_presets`): ``natural``
            (horizontal flip), ``orientation-free`` (+ vertical flip, 90-degree rotations;
            boxes move with the pixels), ``none``.
        seed: augmentation seed; each sample draws from ``(seed, epoch, index)`` (the engine
            calls :meth:`set_epoch`), so a resumed run sees the same augmented images.
    """

    def __init__(
        self,
        data: CocoDataset,
        img_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        train: bool,
        skip_log: SkipLog | None = None,
        jitter: float = 0.75,
        seed: int = 0,
        hflip: float | None = None,
        aug: str = "natural",
    ) -> None:
        self.data, self.img_size, self.train = data, img_size, train
        self.mean, self.std = tuple(mean), tuple(std)
        self.skip_log, self.jitter = skip_log, jitter
        self.seed, self.epoch = seed, 0
        try:
            preset = get_preset(aug)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        self.preset = preset if hflip is None else dataclasses.replace(preset, hflip=hflip)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draw of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.data.images)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        for attempt in range(len(self)):
            rec = self.data.images[(index + attempt) % len(self)]
            try:
                image = load_rgb(rec.path)
            except BadImageError as exc:
                if self.skip_log is not None:
                    self.skip_log.record(rec.path, str(exc))
                if not self.train:
                    return None  # evaluation leaves it out; collate drops None
                continue
            key = [self.seed, self.epoch, index]
            rng = random.Random(int(np.random.SeedSequence(key).generate_state(1)[0]))
            return self._sample(rec, image, rng)
        if self.skip_log is not None:
            raise self.skip_log.nothing_readable(f"the {len(self)} images of {self.data.source}")
        raise UserError(f"no readable image among the {len(self)} of {self.data.source}")

    def _sample(self, rec: CocoImage, image: Image.Image, rng: random.Random) -> dict[str, Any]:
        keep = ~rec.crowd if self.train else np.ones(len(rec.labels), dtype=bool)
        boxes, labels = rec.boxes[keep], rec.labels[keep]
        fill = 1.0
        if self.train:
            t = draw(self.preset, rng)
            boxes = apply_to_boxes(boxes, image.width, image.height, t)
            image = apply_to_pil(image, t)
            fill = rng.uniform(self.jitter, 1.0)
        tensor, boxes, scale = letterbox(image, boxes, self.img_size, self.mean, self.std, fill)
        boxes = np.clip(boxes, 0, self.img_size)
        if self.train:
            # Objects squeezed below one pixel teach nothing; drop them.
            ok = ((boxes[:, 2] - boxes[:, 0]) >= 1) & ((boxes[:, 3] - boxes[:, 1]) >= 1)
            boxes, labels = boxes[ok], labels[ok]
        return {
            "image": tensor,
            "boxes": torch.from_numpy(boxes.astype(np.float32)),
            "labels": torch.from_numpy(labels.astype(np.int64)),
            "image_id": rec.image_id,
            "scale": scale,
            "size": (image.width, image.height),
        }


def collate_detection(samples: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Stack samples into a batch with padded targets (unreadable ones, ``None``, are dropped).

    Returns:
        ``images (B, 3, S, S)``, ``boxes (B, G, 4)`` (0-padded), ``labels (B, G)`` int64
        (-1-padded), ``image_ids`` list, ``scales (B,)``, ``sizes`` list of ``(width, height)``;
        ``G = max(1, most objects in one image)``.
    """
    kept = [s for s in samples if s is not None]
    if not kept:
        return {"images": torch.empty(0), "boxes": torch.empty(0, 1, 4), "image_ids": []}
    g = max(1, max(len(s["labels"]) for s in kept))
    boxes = torch.zeros(len(kept), g, 4)
    labels = torch.full((len(kept), g), -1, dtype=torch.int64)
    for i, s in enumerate(kept):
        n = len(s["labels"])
        boxes[i, :n], labels[i, :n] = s["boxes"], s["labels"]
    return {
        "images": torch.stack([s["image"] for s in kept]),
        "boxes": boxes,
        "labels": labels,
        "image_ids": [s["image_id"] for s in kept],
        "scales": torch.tensor([s["scale"] for s in kept], dtype=torch.float32),
        "sizes": [s["size"] for s in kept],
    }
