"""Detection training samples: boxes follow the pixels under every augmentation preset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simmim_deploy.core.errors import UserError
from simmim_deploy.data.coco import DetectionDataset, read_coco

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
BOX = [20, 10, 70, 22]  # xyxy on a 100 x 40 image: wide, off-centre, so each symmetry differs


def _one_box_set(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    pixels = np.zeros((40, 100, 3), dtype=np.uint8)
    x1, y1, x2, y2 = BOX
    pixels[y1:y2, x1:x2] = 255
    Image.fromarray(pixels).save(root / "images" / "a.png")
    doc = {
        "images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 40}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1]}
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (root / "annotations.json").write_text(json.dumps(doc))
    return root


@pytest.mark.parametrize("aug", ["natural", "orientation-free", "none"])
def test_boxes_match_the_bright_rectangle_in_the_augmented_image(tmp_path, aug):
    data = read_coco(_one_box_set(tmp_path / "coco"))
    ds = DetectionDataset(data, 64, MEAN, STD, train=True, jitter=1.0, aug=aug, seed=1)
    shapes = set()
    for epoch in range(64):
        ds.set_epoch(epoch)
        sample = ds[0]
        bright = sample["image"][0].numpy() > 0.5  # white is +1 after normalising, black -1
        ys, xs = np.nonzero(bright)
        measured = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        np.testing.assert_allclose(sample["boxes"][0].numpy(), measured, atol=1.0)
        shapes.add(tuple(np.round(sample["boxes"][0].numpy())))
    expected = {"natural": 2, "orientation-free": 8, "none": 1}[aug]
    assert len(shapes) == expected  # every symmetry the preset allows was drawn, no other


def test_unknown_preset_is_a_user_error(tmp_path):
    data = read_coco(_one_box_set(tmp_path / "coco"))
    with pytest.raises(UserError, match="orientation-free"):
        DetectionDataset(data, 64, MEAN, STD, train=True, aug="rotate")
