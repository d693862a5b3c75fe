"""COCO detection data: loading, validation, letterbox dataset, YOLO/VOC import, built-in set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simmim_deploy.core.errors import UserError
from simmim_deploy.data.builtin_detection import generate_digits_detection
from simmim_deploy.data.coco import DetectionDataset, collate_detection, read_coco
from simmim_deploy.data.det_import import convert_voc, convert_yolo
from simmim_deploy.data.det_sources import load_detection_splits
from simmim_deploy.data.images import SkipLog

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _coco(root: Path, bad: bool = False) -> Path:
    (root / "images").mkdir(parents=True)
    Image.new("RGB", (100, 50), (10, 200, 30)).save(root / "images" / "a.png")
    Image.new("RGB", (40, 80), (200, 10, 30)).save(root / "images" / "b.jpg")
    (root / "images" / "c.jpg").write_bytes(b"not an image" if bad else b"")
    doc = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 100, "height": 50},
            {"id": 2, "file_name": "b.jpg", "width": 40, "height": 80},
            {"id": 3, "file_name": "c.jpg", "width": 10, "height": 10},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 5, "bbox": [10, 5, 20, 10]},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [50, 20, 40, 30]},
            {"id": 3, "image_id": 2, "category_id": 5, "bbox": [0, 0, 0, 10]},  # no area
            {"id": 4, "image_id": 2, "category_id": 3, "bbox": [4, 8, 8, 16], "iscrowd": 1},
        ],
        "categories": [{"id": 5, "name": "five"}, {"id": 3, "name": "three"}],
    }
    (root / "annotations.json").write_text(json.dumps(doc))
    return root


def test_read_coco_maps_categories_and_drops_empty_boxes(spaced_tmp):
    data = read_coco(_coco(spaced_tmp / "coco"))
    assert data.class_names == ["three", "five"] and data.category_ids == [3, 5]
    a = data.images[0]
    np.testing.assert_allclose(a.boxes, [[10, 5, 30, 15], [50, 20, 90, 50]])
    assert a.labels.tolist() == [1, 0]
    assert data.dropped_boxes == 1 and data.images[1].crowd.tolist() == [True]


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (lambda d: d.pop("categories"), "missing list 'categories'"),
        (lambda d: d["annotations"].append({"image_id": 9, "category_id": 5, "bbox": [0, 0, 1, 1]}),
         "image_id 9"),
        (lambda d: d["annotations"].append({"image_id": 1, "category_id": 4, "bbox": [0, 0, 1, 1]}),
         "category_id 4"),
        (lambda d: d["annotations"].append({"image_id": 1, "category_id": 5}), "bbox"),
    ],
)  # fmt: skip
def test_read_coco_errors_are_one_line(tmp_path, patch, message):
    root = _coco(tmp_path / "coco")
    doc = json.loads((root / "annotations.json").read_text())
    patch(doc)
    (root / "annotations.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match=message) as info:
        read_coco(root)
    assert "\n" not in str(info.value)


def test_dataset_letterboxes_and_skips_bad_images(tmp_path):
    data = read_coco(_coco(tmp_path / "coco", bad=True))
    log = SkipLog(tmp_path / "run")
    ds = DetectionDataset(data, 64, MEAN, STD, train=False, skip_log=log)
    sample = ds[0]
    assert sample["image"].shape == (3, 64, 64) and sample["scale"] == pytest.approx(0.64)
    expected = [[6.4, 3.2, 19.2, 9.6], [32, 12.8, 57.6, 32]]
    np.testing.assert_allclose(sample["boxes"].numpy(), expected, rtol=1e-5)
    batch = collate_detection([ds[i] for i in range(3)])  # the bad one is left out
    assert batch["images"].shape == (2, 3, 64, 64) and batch["image_ids"] == [1, 2]
    assert batch["labels"].tolist() == [[1, 0], [0, -1]]  # crowd kept for eval, padded with -1
    assert log.finalize() == 1
    train = DetectionDataset(data, 64, MEAN, STD, train=True, seed=3)
    assert train[2]["image_id"] == 1  # a readable image stands in for the bad one
    assert len(train[1]["labels"]) == 0  # crowd objects are not trained on
    assert all(float(train[0]["boxes"].max()) <= 64 for _ in range(3))


def test_yolo_import(tmp_path):
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    Image.new("RGB", (200, 100)).save(root / "images" / "x.jpg")
    (root / "labels" / "x.txt").write_text("1 0.5 0.5 0.2 0.4\n0 0.1 0.1 0.2 0.2\n")
    (root / "classes.txt").write_text("cat\ndog\n")
    out, images_dir, skipped = convert_yolo(root, tmp_path / "out" / "ann.json")
    data = read_coco(out, images_dir)
    assert skipped == 0 and data.class_names == ["cat", "dog"]
    np.testing.assert_allclose(data.images[0].boxes, [[80, 30, 120, 70], [0, 0, 40, 20]])
    assert data.images[0].labels.tolist() == [1, 0]
    with pytest.raises(UserError, match="x.txt:1"):
        (root / "labels" / "x.txt").write_text("7 0.5 0.5 0.2 0.4\n")
        convert_yolo(root, tmp_path / "out" / "ann2.json")


def test_voc_import_and_split(tmp_path):
    root = tmp_path / "voc"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "Annotations").mkdir()
    for i in range(4):
        Image.new("RGB", (64, 48)).save(root / "JPEGImages" / f"im{i}.jpg")
        (root / "Annotations" / f"im{i}.xml").write_text(
            f"<annotation><filename>im{i}.jpg</filename>"
            "<object><name>bird</name><difficult>0</difficult><bndbox><xmin>11</xmin>"
            "<ymin>6</ymin><xmax>30</xmax><ymax>20</ymax></bndbox></object>"
            "<object><name>ant</name><difficult>1</difficult><bndbox><xmin>1</xmin>"
            "<ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>"
        )
    out, images_dir, _ = convert_voc(root, tmp_path / "voc.json")
    data = read_coco(out, images_dir)
    assert data.class_names == ["ant", "bird"]
    np.testing.assert_allclose(data.images[0].boxes[0], [10, 5, 30, 20])  # 1-based -> 0-based
    assert data.images[0].crowd.tolist() == [False, True]  # difficult -> ignored
    splits = load_detection_splits(f"voc:{root}", None, tmp_path / "run", val_split=0.25)
    assert len(splits.train.images) == 3 and len(splits.val.images) == 1


def test_builtin_generator_is_deterministic(tmp_path):
    a = generate_digits_detection(tmp_path / "a", seed=7, num_train=4, num_val=2)
    b = generate_digits_detection(tmp_path / "b", seed=7, num_train=4, num_val=2)
    c = generate_digits_detection(tmp_path / "c", seed=8, num_train=4, num_val=2)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 2 + 4 + 2
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    ann = "train/annotations.json"
    assert (a / ann).read_bytes() != (c / ann).read_bytes()
    data = read_coco(a / "train")
    assert data.class_names == [str(d) for d in range(10)]
    assert all(1 <= len(im.labels) <= 4 for im in data.images)
    for im in data.images:
        assert (im.boxes[:, 2] <= im.width).all() and (im.boxes[:, 3] <= im.height).all()
