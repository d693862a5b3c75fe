"""COCO box mAP with faster-coco-eval, on plain dicts and arrays.

Shared by training-time evaluation (``simmim_deploy.train.detect_eval``) and the export
verification gate (``simmim_deploy.export.det_truth``), so a checkpoint and its exported
artefacts are scored by the same code.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

from simmim_deploy.core.boxes import xyxy_to_xywh
from simmim_deploy.data.coco import CocoDataset


def coco_ground_truth(data: CocoDataset, image_ids: set[int] | None = None) -> dict[str, Any]:
    """COCO ground-truth dict of ``data`` (restricted to ``image_ids`` when given)."""
    images, anns = [], []
    for rec in data.images:
        if image_ids is not None and rec.image_id not in image_ids:
            continue
        images.append({"id": rec.image_id, "width": rec.width, "height": rec.height})
        for box, label, crowd in zip(xyxy_to_xywh(rec.boxes), rec.labels, rec.crowd, strict=True):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": rec.image_id,
                    "category_id": data.category_ids[int(label)],
                    "bbox": [float(v) for v in box],
                    "area": float(box[2] * box[3]),
                    "iscrowd": int(crowd),
                }
            )
    cats = [{"id": c, "name": n} for c, n in zip(data.category_ids, data.class_names, strict=True)]
    return {"images": images, "annotations": anns, "categories": cats}


def coco_results(predictions: list[dict[str, Any]], category_ids: list[int]) -> list[dict]:
    """Detections in the COCO results format (``bbox`` as ``[x, y, w, h]``)."""
    results = []
    for pred in predictions:
        for box, score, label in zip(
            xyxy_to_xywh(pred["boxes"]), pred["scores"], pred["labels"], strict=True
        ):
            results.append(
                {
                    "image_id": int(pred["image_id"]),
                    "category_id": category_ids[int(label)],
                    "bbox": [float(v) for v in box],
                    "score": float(score),
                }
            )
    return results


def coco_map(ground_truth: dict[str, Any], results: list[dict]) -> dict[str, float]:
    """COCO box mAP@[.5:.95], mAP50, mAP75 and AR@100 with faster-coco-eval.

    Args:
        ground_truth: COCO dict (images, annotations, categories).
        results: COCO results list.

    Returns:
        ``{"mAP", "mAP50", "mAP75", "AR100"}`` in ``[0, 1]`` (0 when there is nothing to score).
    """
    from faster_coco_eval import COCO, COCOeval_faster

    if not results or not ground_truth["annotations"]:
        return {"mAP": 0.0, "mAP50": 0.0, "mAP75": 0.0, "AR100": 0.0}
    quiet = lambda *a, **k: None  # noqa: E731 - silence the summary table
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ground_truth, print_function=quiet)
        dt = gt.loadRes(results)
        ev = COCOeval_faster(gt, dt, "bbox", print_function=quiet)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [max(0.0, float(s)) for s in ev.stats]
    return {"mAP": stats[0], "mAP50": stats[1], "mAP75": stats[2], "AR100": stats[8]}
