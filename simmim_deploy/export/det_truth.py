"""Labelled detection data for the verification gate and the export benchmark.

When ``--eval-data`` is detection data with ground truth (a COCO folder, ``yolo:``/``voc:`` or
``builtin:digits-det``) and the checkpoint's categories, every artefact is also scored with COCO
mAP: its outputs are letterboxed-pixel boxes, mapped back to each original image exactly as the
serving runtime does, then scored with faster-coco-eval against the annotations. The gate then
compares the artefact's mAP with the PyTorch reference's (``map_drop`` in points).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from typing import Any

import numpy as np

from simmim_deploy.core.boxes import Letterbox, letterbox_geometry
from simmim_deploy.core.data_split import DataSplit
from simmim_deploy.core.errors import UserError
from simmim_deploy.export.inputs import ImageSet, preprocess

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DetectionTruth:
    """Ground truth of the images a detector is verified on, in input order.

    Attributes:
        ground_truth: COCO dict (images, annotations, categories) of exactly those images.
        image_ids: COCO image id of each input row.
        geometries: how each row was letterboxed (maps its boxes back to original pixels).
        category_ids: COCO category id of each class index.
    """

    ground_truth: dict[str, Any]
    image_ids: list[int]
    geometries: list[Letterbox]
    category_ids: list[int]


def load_detection_truth(
    source: str, limit: int, meta: dict[str, Any], recorded: DataSplit | None = None
) -> tuple[ImageSet, np.ndarray, DetectionTruth] | None:
    """Images, their preprocessed batch and ground truth, or None for unannotated ``source``.

    Args:
        source: a ``--data`` value of ``train detect`` (its held-out part is used).
        limit: at most this many images (the first ones, so runs are comparable).
        meta: the detector's checkpoint meta (img_size, class_names, preprocessing).
        recorded: the split ``train detect`` recorded; when ``source`` is its training data,
            exactly the images it held out are scored.

    Returns:
        None when ``source`` is not annotated detection data or its categories differ from the
        checkpoint's (a warning says so); unreadable images are skipped and counted.
    """
    from simmim_deploy.data.coco_eval import coco_ground_truth
    from simmim_deploy.data.det_sources import recorded_detection_splits
    from simmim_deploy.data.images import load_rgb

    with tempfile.TemporaryDirectory() as tmp:
        try:
            # The part `train detect` held out (as it recorded the split), never the images
            # it trained on or calibration draws from.
            coco = recorded_detection_splits(source, tmp, recorded).val
        except UserError as err:
            log.warning("no mAP on %s (not annotated detection data: %s)", source, err)
            return None
        if [str(c) for c in coco.class_names] != [str(c) for c in meta["class_names"]]:
            log.warning("%s has other categories than the checkpoint: no mAP reported", source)
            return None
        images, records, skipped = [], [], 0
        for rec in coco.images[:limit]:
            try:
                images.append(load_rgb(rec.path))
                records.append(rec)
            except (UserError, OSError):
                skipped += 1
    if not images:
        raise UserError(f"no readable annotated images in {source}")
    size = int(meta["img_size"])
    truth = DetectionTruth(
        ground_truth=coco_ground_truth(coco, {r.image_id for r in records}),
        image_ids=[r.image_id for r in records],
        geometries=[letterbox_geometry(im.width, im.height, size) for im in images],
        category_ids=list(coco.category_ids),
    )
    desc = f"{source} ({len(images)} annotated images)"
    data = ImageSet(images, None, list(coco.class_names), desc, skipped)
    return data, preprocess(images, meta), truth


def detection_map(outputs: list[np.ndarray], truth: DetectionTruth) -> dict[str, float]:
    """COCO mAP (%) of detector outputs ``[boxes, scores, labels, num_detections]``.

    Returns:
        ``{"mAP", "mAP50"}`` in percent.
    """
    from simmim_deploy.core.boxes import boxes_to_original
    from simmim_deploy.data.coco_eval import coco_map, coco_results

    boxes, scores, labels, num = outputs
    predictions = []
    for i, (image_id, geo) in enumerate(zip(truth.image_ids, truth.geometries, strict=True)):
        n = int(num[i])
        predictions.append(
            {
                "image_id": image_id,
                "boxes": boxes_to_original(boxes[i, :n], geo.scale, geo.pad, geo.original),
                "scores": scores[i, :n],
                "labels": labels[i, :n],
            }
        )
    stats = coco_map(truth.ground_truth, coco_results(predictions, truth.category_ids))
    return {"mAP": stats["mAP"] * 100, "mAP50": stats["mAP50"] * 100}
