"""Detection mAP in the verification gate: box mapping, scoring and the mAP-drop budget."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from simmim_deploy.export.bundle import export_bundle
from simmim_deploy.export.config import ExportConfig
from simmim_deploy.export.det_truth import detection_map, load_detection_truth
from simmim_deploy.export.verify import VerificationError, verify_bundle
from simmim_deploy.models.detector import build_detector, detector_meta

DATA = "builtin:digits-det-mini"  # 16 annotated validation images


def _meta(size: int = 64) -> dict:
    model = build_detector("vit_nano_patch8_32", 10, size, head={"channels": 16, "num_convs": 1})
    return detector_meta(model, [str(i) for i in range(10)], "vit_nano_patch8_32")


def _truth_as_outputs(truth, max_dets: int = 20, shift: float = 0.0) -> list[np.ndarray]:
    """The annotations themselves, in network (letterboxed) pixels, as detector outputs."""
    n = len(truth.image_ids)
    boxes = np.zeros((n, max_dets, 4), np.float32)
    scores = np.zeros((n, max_dets), np.float32)
    labels = np.zeros((n, max_dets), np.int64)
    num = np.zeros(n, np.int64)
    for i, (image_id, geo) in enumerate(zip(truth.image_ids, truth.geometries, strict=True)):
        anns = [a for a in truth.ground_truth["annotations"] if a["image_id"] == image_id]
        for k, ann in enumerate(anns[:max_dets]):
            x, y, w, h = ann["bbox"]
            boxes[i, k] = np.asarray([x + shift, y, x + w + shift, y + h]) * geo.scale
            scores[i, k] = 1.0
            labels[i, k] = truth.category_ids.index(ann["category_id"])
        num[i] = min(len(anns), max_dets)
    return [boxes, scores, labels, num]


def test_ground_truth_scores_100_and_shifted_boxes_score_less() -> None:
    found = load_detection_truth(DATA, 16, _meta())
    assert found is not None
    images, x, truth = found
    assert x.shape == (16, 3, 64, 64) and len(images.images) == 16
    assert truth.ground_truth["annotations"], "the check needs objects"
    perfect = detection_map(_truth_as_outputs(truth), truth)
    assert perfect["mAP"] == pytest.approx(100.0)
    shifted = detection_map(_truth_as_outputs(truth, shift=4.0), truth)
    assert shifted["mAP"] < 90.0  # 4 original pixels off on ~20-pixel digits


def test_unannotated_or_foreign_data_gives_no_truth() -> None:
    assert load_detection_truth("builtin:photos", 8, _meta()) is None
    other = {**_meta(), "class_names": [f"c{i}" for i in range(10)]}
    assert load_detection_truth(DATA, 8, other) is None


def test_detection_bundle_records_map_and_gates_on_its_drop(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_detector("vit_nano_patch8_32", 10, 64, head={"channels": 16, "num_convs": 1})
    with torch.no_grad():  # a spread of scores so there are detections to score
        model.head.cls_logits.bias.normal_(0.0, 1.0)
    meta = detector_meta(model.eval(), [str(i) for i in range(10)], "vit_nano_patch8_32")
    ckpt = tmp_path / "det.pt"
    torch.save({"model": model.state_dict(), "meta": meta}, ckpt)
    base = dict(checkpoint=str(ckpt), eval_data=DATA, verify_images=16, exporter="torchscript")
    out = tmp_path / "bundle"
    export_bundle(ExportConfig(out=str(out), **base))
    parity = json.loads((out / "report" / "parity.json").read_text())
    metrics = parity["artefacts"]["fp32"]["metrics"]
    assert metrics["map"] == pytest.approx(metrics["map_reference"], abs=1e-6)
    assert metrics["map_drop"] == pytest.approx(0.0, abs=1e-6)
    assert "annotated" in parity["data"]
    assert "map_drop" in verify_bundle(out, DATA, limit=8)["artefacts"]["fp32"]["metrics"]
    # A budget no artefact can meet must stop the export and name the mAP.
    strict = {"fp32": {"max_metric_drop": -1.0}}
    with pytest.raises(VerificationError, match="mAP drop"):
        export_bundle(ExportConfig(out=str(tmp_path / "b2"), thresholds=strict, **base))
    assert not (tmp_path / "b2").exists()


def test_detection_data_feeds_calibration_with_its_training_part() -> None:
    from simmim_deploy.export.inputs import load_image_set

    train = load_image_set(DATA, "train", 100)
    val = load_image_set(DATA, "val", 100)
    assert (len(train.images), len(val.images)) == (64, 16)
    assert train.labels is None and "train part" in train.description
