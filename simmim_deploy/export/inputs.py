"""Real images for calibration, verification and recovery, preprocessed like evaluation.

``--calib-data`` / ``--eval-data`` take ``builtin:NAME`` or a folder. Calibration draws from the
*training* part of a labelled set and verification from its held-out part, so the INT8 ranges
are never fitted on the images that score them. Preprocessing is the model's eval transform
(timm's ``create_transform(is_training=False)`` for classification, a letterbox for detection),
the same one the manifest's ``preprocess`` block describes for the serving runtime.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from simmim_deploy.core.checkpoint_meta import CheckpointMeta
from simmim_deploy.core.data_split import DataSplit
from simmim_deploy.core.errors import UserError
from simmim_deploy.core.preprocess import PreprocessSpec, letterbox

Split = Literal["train", "val"]


@dataclasses.dataclass(frozen=True)
class ImageSet:
    """Decoded images with optional labels.

    Attributes:
        images: RGB images.
        labels: ``(N,)`` int64 class ids, or None when unlabelled.
        class_names: label names, or None.
        description: where the images come from, one line.
        skipped_files: unreadable files left out.
    """

    images: list[Image.Image]
    labels: np.ndarray | None
    class_names: list[str] | None
    description: str
    skipped_files: int = 0


def preprocess_spec(meta: dict[str, Any]) -> PreprocessSpec:
    """The eval transform of a checkpoint ``meta`` (or the spec a bundle's facts carry)."""
    if isinstance(meta.get("preprocess"), PreprocessSpec):  # verify: read from the manifest
        return meta["preprocess"]
    return CheckpointMeta.from_dict(meta).preprocess()


def _classification_transform(spec: PreprocessSpec):  # noqa: ANN202 - torchvision Compose
    from timm.data import create_transform

    return create_transform(
        input_size=(3, spec.crop, spec.crop),
        is_training=False,
        interpolation=spec.interpolation,
        mean=spec.mean,
        std=spec.std,
        crop_pct=spec.crop_pct,
        crop_mode="center",
    )


def preprocess(images: list[Image.Image], meta: dict[str, Any]) -> np.ndarray:
    """Eval-transform RGB images into one batch.

    Classification goes through timm's ``create_transform`` (the training eval transform, which
    the runtime's numpy version matches bit for bit); detection through the one letterbox of
    :mod:`simmim_deploy.core.preprocess`.

    Args:
        images: N RGB images of any size.
        meta: checkpoint meta (task, img_size, mean/std, interpolation, crop_pct).

    Returns:
        float32 ``(N, 3, S, S)``, normalised.
    """
    spec = preprocess_spec(meta)
    if spec.mode == "letterbox":
        arrays = [letterbox(img.convert("RGB"), spec)[0] for img in images]
    else:
        tf = _classification_transform(spec)
        arrays = [tf(img.convert("RGB")).numpy() for img in images]
    return np.stack(arrays).astype(np.float32, copy=False)


def batch_sha256(batch: np.ndarray) -> str:
    """Hash of a preprocessed batch: identifies the calibration data in the manifest."""
    return hashlib.sha256(np.ascontiguousarray(batch).tobytes()).hexdigest()


def load_image_set(
    source: str, split: Split, limit: int, seed: int = 0, recorded: DataSplit | None = None
) -> ImageSet:
    """Load up to ``limit`` real images from ``builtin:NAME`` or a folder.

    Args:
        source: ``builtin:mnist|digits|photos``, an ImageFolder tree (labelled), a tree with
            ``train/`` and ``val/``, any folder of images (unlabelled), or detection data
            (``builtin:digits-det``, ``yolo:DIR``, ``voc:DIR``; images only).
        split: ``train`` for calibration/recovery, ``val`` for verification and metrics.
        limit: at most this many images, drawn with ``seed`` when there are more.
        seed: seeds the draw.
        recorded: the split the checkpoint's training run recorded; when ``source`` is its
            training data, that split is applied (never the defaults).

    Raises:
        UserError: unknown built-in name, missing folder, no images.
    """
    from simmim_deploy.data.builtin import BUILTIN_PREFIX, load_builtin
    from simmim_deploy.data.det_sources import BUILTIN_DET

    if recorded is not None and not recorded.covers(source):
        recorded = None
    detection = recorded is not None and recorded.task == "detection"
    if detection or source in BUILTIN_DET or source.startswith(("yolo:", "voc:")):
        return _detection_images(source, split, limit, seed, recorded)
    if source.startswith(BUILTIN_PREFIX):
        name = source[len(BUILTIN_PREFIX) :]
        data = load_builtin(name)
        if data.labels is None:
            return _draw(ImageSet(data.images, None, None, source), limit, seed)
        return _labelled(source, split, limit, seed, recorded)
    root = Path(source).expanduser()
    if not root.exists():
        raise UserError(f"image data not found: {root} (give a folder or builtin:NAME)")
    try:
        return _labelled(str(root), split, limit, seed, recorded)
    except UserError:
        return _folder(root, limit, seed)


def _labelled(
    source: str, split: Split, limit: int, seed: int, recorded: DataSplit | None
) -> ImageSet:
    from simmim_deploy.data.classification import load_classification_splits

    try:
        if recorded is not None:  # the training run's own split of this data
            splits = load_classification_splits(
                source, recorded.val_data, recorded.val_split, split_seed=recorded.seed
            )
        else:
            splits = load_classification_splits(source)
    except UserError:
        if recorded is not None:
            raise
        # One labelled tree without val/: use it whole for either purpose.
        splits = load_classification_splits(source, val_split=0.2)
    part = splits.train if split == "train" else splits.val
    idx = _indices(len(part), limit, seed)
    images, labels, skipped = _decode([part.items[i] for i in idx], part.labels[idx])
    desc = f"{splits.description}, {split} part"
    return ImageSet(images, labels, list(part.class_names), desc, skipped)


def _detection_images(
    source: str, split: Split, limit: int, seed: int, recorded: DataSplit | None
) -> ImageSet:
    """The images (no labels) of one part of detection data, for calibration or parity."""
    import tempfile

    from simmim_deploy.data.det_sources import recorded_detection_splits

    with tempfile.TemporaryDirectory() as tmp:
        splits = recorded_detection_splits(source, tmp, recorded)
        part = splits.train if split == "train" else splits.val
        idx = _indices(len(part.images), limit, seed)
        images, _, skipped = _decode([part.images[i].path for i in idx], None)
    return ImageSet(images, None, None, f"{source}, {split} part", skipped)


def _folder(root: Path, limit: int, seed: int) -> ImageSet:
    from simmim_deploy.data.images import find_images

    files = find_images(root)
    idx = _indices(len(files), limit, seed)
    images, _, skipped = _decode([files[i] for i in idx], None)
    if not images:
        raise UserError(f"no readable images under {root}")
    return ImageSet(images, None, None, str(root), skipped)


def _decode(items: list[Any], labels: np.ndarray | None) -> tuple[list[Image.Image], Any, int]:
    """Decode paths (bad files are skipped and counted, never fatal)."""
    from simmim_deploy.data.images import load_rgb

    images, keep = [], []
    for i, item in enumerate(items):
        try:
            images.append(item if isinstance(item, Image.Image) else load_rgb(item))
            keep.append(i)
        except (UserError, OSError):
            continue
    kept_labels = labels[np.asarray(keep, dtype=np.int64)] if labels is not None else None
    return images, kept_labels, len(items) - len(images)


def _draw(data: ImageSet, limit: int, seed: int) -> ImageSet:
    idx = _indices(len(data.images), limit, seed)
    labels = data.labels[idx] if data.labels is not None else None
    return dataclasses.replace(data, images=[data.images[i] for i in idx], labels=labels)


def _indices(n: int, limit: int, seed: int) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))
