"""Resolve a detection ``--data`` value into COCO training / validation sets.

Accepted values:

- a COCO folder (``annotations.json`` + ``images/``), or a folder with ``train/`` and ``val/``
  COCO folders;
- ``yolo:PATH`` and ``voc:PATH``: converted to COCO JSON under ``WORK/data/`` first
  (:mod:`simmim_deploy.data.det_import`); splits ``images/train|val`` (YOLO) and
  ``ImageSets/Main/train|val.txt`` (VOC) are used when present;
- ``builtin:digits-det`` (600 train / 150 val images) and ``builtin:digits-det-mini`` (64 / 16,
  for smoke tests): the generated digits-on-photos set
  (:mod:`simmim_deploy.data.builtin_detection`);
- ``builtin:nuclei-det`` and ``builtin:galaxies-det``: 19 train / 6 val 128 px tiles of a
  real microscopy / deep-field image, small objects (:mod:`simmim_deploy.data.builtin_tiles`).

Without a separate validation part (and no ``--val-data``), a seeded ``val_split`` share of the
images is held out.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from simmim_deploy.core.data_split import DataSplit
from simmim_deploy.core.errors import UserError
from simmim_deploy.data.coco import ANNOTATIONS, CocoDataset, read_coco

# name -> (training images, validation images); "-mini" is for smoke tests and demos.
BUILTIN_DET = {
    "builtin:digits-det": (600, 150),
    "builtin:digits-det-mini": (64, 16),
    "builtin:nuclei-det": (19, 6),
    "builtin:galaxies-det": (19, 6),
}


@dataclasses.dataclass(frozen=True)
class DetectionSplits:
    """Training and validation sets with one class list."""

    train: CocoDataset
    val: CocoDataset
    class_names: list[str]
    description: str


def _convert(kind: str, root: Path, work: Path, split: str | None) -> CocoDataset:
    from simmim_deploy.data import det_import

    out = work / "data" / f"{kind}-{split or 'all'}.json"
    convert = det_import.convert_yolo if kind == "yolo" else det_import.convert_voc
    path, images_dir, _ = convert(root, out, split)
    return read_coco(path, images_dir)


def _parts(data: str, work: Path) -> tuple[CocoDataset, CocoDataset | None]:
    """Training part and, when the source has one, its validation part."""
    text = str(data)
    if text.startswith("builtin:"):
        if text not in BUILTIN_DET:
            from simmim_deploy.core.config import suggest

            hint = suggest(text, BUILTIN_DET)
            raise UserError(
                f"unknown built-in detection data '{text}'{hint}; use one of {list(BUILTIN_DET)}"
            )
        if text in ("builtin:nuclei-det", "builtin:galaxies-det"):
            from simmim_deploy.data.builtin_tiles import tile_detection_root

            root = tile_detection_root(text.removeprefix("builtin:"), seed=0)
            return read_coco(root / "train"), read_coco(root / "val")
        from simmim_deploy.data.builtin_detection import digits_detection_root

        num_train, num_val = BUILTIN_DET[text]
        root = digits_detection_root(seed=0, num_train=num_train, num_val=num_val)
        return read_coco(root / "train"), read_coco(root / "val")
    for kind in ("yolo", "voc"):
        if text.startswith(f"{kind}:"):
            root = Path(text[len(kind) + 1 :]).expanduser()
            if not root.is_dir():
                raise UserError(f"{kind} data folder not found: {root}")
            has_splits = (
                (root / "images" / "train").is_dir()
                if kind == "yolo"
                else (root / "ImageSets" / "Main" / "train.txt").is_file()
            )
            if has_splits:
                return _convert(kind, root, work, "train"), _convert(kind, root, work, "val")
            return _convert(kind, root, work, None), None
    root = Path(text).expanduser()
    if not root.exists():
        raise UserError(
            f"detection data not found: {root} (a COCO folder, yolo:, voc: or builtin:)"
        )
    if (root / "train" / ANNOTATIONS).is_file() and (root / "val" / ANNOTATIONS).is_file():
        return read_coco(root / "train"), read_coco(root / "val")
    return read_coco(root), None


def split_dataset(data: CocoDataset, fraction: float, seed: int) -> tuple[CocoDataset, CocoDataset]:
    """Hold out ``fraction`` of the images (at least one), seeded; returns ``(train, val)``."""
    n = len(data.images)
    if n < 2:
        raise UserError(f"{data.source}: {n} image(s) cannot be split; give --val-data")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1, round(fraction * n)))
    val_idx = set(order[:n_val].tolist())
    train = [im for i, im in enumerate(data.images) if i not in val_idx]
    val = [im for i, im in enumerate(data.images) if i in val_idx]
    return dataclasses.replace(data, images=train), dataclasses.replace(data, images=val)


def load_detection_splits(
    data: str,
    val_data: str | None,
    work_dir: str | Path,
    val_split: float = 0.1,
    seed: int = 0,
) -> DetectionSplits:
    """Training and validation sets for ``train detect``.

    Args:
        data: ``--data`` value (see the module docstring).
        val_data: optional ``--val-data`` value (its validation part, or all of it, is used).
        work_dir: run folder; converted annotation files go to ``WORK/data/``.
        val_split: share held out when there is no validation part.
        seed: seed of that hold-out.

    Raises:
        UserError: unreadable sources or class lists that differ between the parts.
    """
    work = Path(work_dir)
    train, val = _parts(data, work)
    if val_data:
        val = load_detection_eval(val_data, work)
    if val is None:
        train, val = split_dataset(train, val_split, seed)
    if val.class_names != train.class_names:
        raise UserError(
            f"validation classes {val.class_names[:5]}... differ from training classes "
            f"{train.class_names[:5]}...; both parts need the same categories"
        )
    desc = f"{data}: {len(train.images)} training / {len(val.images)} validation images"
    return DetectionSplits(train, val, train.class_names, desc)


def recorded_detection_splits(
    data: str, work_dir: str | Path, recorded: DataSplit | None
) -> DetectionSplits:
    """The parts of ``data`` as the run that ``recorded`` describes split them.

    When ``data`` is that run's training data, its recorded ``--val-data`` / ``--val-split`` /
    seed are applied, so the held-out part is exactly the images it never trained on; any other
    source is split with the defaults (its own val part, else 10 % with seed 0).
    """
    if recorded is not None and recorded.covers(data):
        val_split = recorded.val_split if recorded.val_split is not None else 0.1
        return load_detection_splits(data, recorded.val_data, work_dir, val_split, recorded.seed)
    return load_detection_splits(data, None, work_dir)


def load_detection_eval(data: str, work_dir: str | Path) -> CocoDataset:
    """The evaluation set of a ``--data`` value: its validation part if it has one, else all."""
    train, val = _parts(data, Path(work_dir))
    return val if val is not None else train
