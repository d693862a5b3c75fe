"""The demo's data on disk: real built-in images written as ordinary PNG files.

Writing files (rather than reading ``builtin:NAME`` in memory) is what a user's own data looks
like, so every stage runs on its real input path: pre-training on a folder, ``predict`` on image
files, export calibration on a folder. The held-out part is never seen in pre-training.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from simmim_deploy.core.atomic import atomic_directory


@dataclasses.dataclass(frozen=True)
class DemoData:
    """Where the demo's images are.

    Attributes:
        pool: folder of unlabelled PNGs (the training part, labels dropped).
        heldout: ImageFolder tree ``heldout/<class>/*.png`` (the fixed held-out part).
        pool_images, heldout_images: how many files each holds.
        class_names: class names in label order.
        description: where the images come from, one line.
    """

    pool: Path
    heldout: Path
    pool_images: int
    heldout_images: int
    class_names: list[str]
    description: str


def write_demo_data(source: str, folder: Path, pool_images: int) -> DemoData:
    """Write the unlabelled pool and the labelled held-out part of ``source`` as PNG files.

    Args:
        source: a labelled built-in set (``builtin:mnist``) with a fixed held-out part.
        folder: destination; ``folder/pool`` and ``folder/heldout`` are created atomically.
        pool_images: at most this many pool images (the first ones of the training part).

    Returns:
        The written layout.
    """
    from simmim_deploy.data.classification import load_classification_splits

    splits = load_classification_splits(source)
    pool_items = list(splits.train.items)[:pool_images]
    with atomic_directory(folder / "pool") as tmp:
        for i, image in enumerate(pool_items):
            image.save(tmp / f"{i:05d}.png")
    val = splits.val
    with atomic_directory(folder / "heldout") as tmp:
        for name in val.class_names:
            (tmp / name).mkdir()
        for i, (image, label) in enumerate(zip(val.items, val.labels, strict=True)):
            image.save(tmp / val.class_names[int(label)] / f"{i:05d}.png")
    return DemoData(
        pool=folder / "pool",
        heldout=folder / "heldout",
        pool_images=len(pool_items),
        heldout_images=len(val),
        class_names=list(val.class_names),
        description=splits.description,
    )


def write_detection_data(folder: Path, seed: int, num_train: int, num_val: int) -> Path:
    """Generate the digits-on-photos COCO set (``train/`` + ``val/``) inside the demo folder."""
    from simmim_deploy.data.builtin_detection import generate_digits_detection

    return generate_digits_detection(folder, seed=seed, num_train=num_train, num_val=num_val)
