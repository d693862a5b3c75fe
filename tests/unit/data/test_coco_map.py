"""COCO mAP on a hand-checked tiny ground truth: faster-coco-eval equals pycocotools."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from simmim_deploy.data.coco_eval import coco_map

GT = {
    "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 80}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 10, 30, 30], "area": 900,
         "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 9, "bbox": [50, 50, 40, 20], "area": 800,
         "iscrowd": 0},
        {"id": 3, "image_id": 2, "category_id": 7, "bbox": [0, 0, 20, 20], "area": 400,
         "iscrowd": 0},
    ],
    "categories": [{"id": 7, "name": "cat"}, {"id": 9, "name": "dog"}],
}  # fmt: skip


def _pycocotools(gt: dict, results: list[dict]) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {k: list(v) for k, v in gt.items()}
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_hand_checked_values():
    # cat: one perfect hit (image 1), image 2's cat missed -> recall 0.5 at precision 1.
    # dog: a perfect hit. COCO's 101-point interpolation: cat AP = 51/101, dog AP = 1.
    results = [
        {"image_id": 1, "category_id": 7, "bbox": [10, 10, 30, 30], "score": 0.9},
        {"image_id": 1, "category_id": 9, "bbox": [50, 50, 40, 20], "score": 0.8},
    ]
    m = coco_map(GT, results)
    expected = (51 / 101 + 1.0) / 2
    assert m["mAP50"] == pytest.approx(expected, abs=1e-6)
    assert m["mAP"] == pytest.approx(expected, abs=1e-6)  # perfect boxes: every IoU threshold


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_pycocotools_on_noisy_detections(seed):
    rng = np.random.default_rng(seed)
    results = []
    for ann in GT["annotations"]:
        for _ in range(3):  # jittered duplicates, some with the wrong class
            box = np.array(ann["bbox"], float) + rng.normal(0, 3, 4)
            cat = ann["category_id"] if rng.random() < 0.8 else 16 - ann["category_id"]
            bbox = [float(v) for v in box]
            results.append(
                {"image_id": ann["image_id"], "category_id": int(cat), "bbox": bbox,
                 "score": float(rng.random())}
            )  # fmt: skip
    ours = coco_map(GT, results)
    ref = _pycocotools(GT, results)
    assert ours["mAP"] == pytest.approx(ref[0], abs=1e-6)
    assert ours["mAP50"] == pytest.approx(ref[1], abs=1e-6)
    assert ours["mAP75"] == pytest.approx(max(ref[2], 0.0), abs=1e-6)
    assert 0.0 < ours["mAP"] < 1.0


def test_no_detections_scores_zero():
    assert coco_map(GT, [])["mAP"] == 0.0
