"""builtin:nuclei-det / galaxies-det: real-image tiles, boxes from the documented segmentation."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("skimage")

from simmim_deploy.data.builtin_tiles import TILE, generate_tile_detection  # noqa: E402
from simmim_deploy.data.coco import read_coco  # noqa: E402
from simmim_deploy.data.images import load_rgb  # noqa: E402


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_tile_detection("nuclei-det", tmp_path_factory.mktemp("nuclei") / "set", 0)


def test_split_sizes_and_small_objects(root: Path) -> None:
    train, val = read_coco(root / "train"), read_coco(root / "val")
    assert (len(train.images), len(val.images)) == (19, 6)
    assert train.class_names == val.class_names == ["nucleus"]
    boxes = np.concatenate([im.boxes for im in train.images])
    assert len(boxes) >= 60 and sum(len(im.boxes) for im in val.images) >= 20
    assert boxes.min() >= 0 and boxes.max() <= TILE
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    assert 15 <= np.median(sides) <= 30 and sides.max() <= 50


def test_no_tile_is_in_both_parts_and_generation_is_deterministic(
    root: Path, tmp_path: Path
) -> None:
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    train = {digest(p) for p in (root / "train" / "images").glob("*.png")}
    val = {digest(p) for p in (root / "val" / "images").glob("*.png")}
    assert len(train) == 19 and len(val) == 6 and not train & val
    again = generate_tile_detection("nuclei-det", tmp_path / "again", seed=0)
    assert digest(again / "val" / "annotations.json") == digest(root / "val" / "annotations.json")


def test_boxes_hold_blue_stained_pixels(root: Path) -> None:
    """The rule labels haematoxylin-blue blobs: inside a box blue dominates red, unlike the tile."""
    data = read_coco(root / "train")
    inside, whole = [], []
    for rec in data.images:
        rgb = np.asarray(load_rgb(rec.path), dtype=np.float32)
        blue = rgb[..., 2] - rgb[..., 0]
        whole.append(blue.mean())
        for x1, y1, x2, y2 in rec.boxes.round().astype(int):
            inside.append(blue[y1:y2, x1:x2].mean())
    assert np.median(inside) > 5 and np.median(inside) > np.median(whole) + 10


def test_galaxies_are_small_bright_objects_on_a_dark_field(tmp_path: Path) -> None:
    root = generate_tile_detection("galaxies-det", tmp_path / "galaxies", seed=0)
    train, val = read_coco(root / "train"), read_coco(root / "val")
    assert train.class_names == ["galaxy"] and (len(train.images), len(val.images)) == (19, 6)
    boxes = np.concatenate([im.boxes for im in train.images])
    assert len(boxes) >= 120 and sum(len(im.boxes) for im in val.images) >= 30
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    assert 6 <= np.median(sides) <= 15 and sides.max() <= 40
    rec = max(train.images, key=lambda im: len(im.boxes))
    gray = np.asarray(load_rgb(rec.path), dtype=np.float32).mean(-1)
    inside = [gray[y1:y2, x1:x2].max() for x1, y1, x2, y2 in rec.boxes.round().astype(int)]
    assert min(inside) > 40 > np.median(gray)  # every box holds pixels above the threshold
