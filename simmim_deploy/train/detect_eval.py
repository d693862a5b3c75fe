"""Detection evaluation: COCO mAP with faster-coco-eval, boxes in original image coordinates.

The model sees letterboxed images; its boxes are mapped back to each original image
(:func:`simmim_deploy.core.boxes.boxes_to_original`) before scoring against the ground truth,
so the numbers are those a user of the deployed model gets. Unreadable images are skipped,
counted and left out of both ground truth and detections.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from simmim_deploy.core.atomic import atomic_path, atomic_write_text
from simmim_deploy.core.boxes import boxes_to_original
from simmim_deploy.data.coco import CocoDataset, DetectionDataset, collate_detection
from simmim_deploy.data.coco_eval import coco_ground_truth, coco_map, coco_results
from simmim_deploy.data.images import SkipLog, load_rgb

_COLOURS = [
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
]


def make_loader(
    data: CocoDataset, meta: dict[str, Any], batch_size: int, skip_log: SkipLog | None = None
) -> torch.utils.data.DataLoader:
    """Evaluation loader: letterboxed, no augmentation, unreadable images dropped."""
    dataset = DetectionDataset(
        data, int(meta["img_size"]), meta["mean"], meta["std"], train=False, skip_log=skip_log
    )
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_detection
    )


@torch.no_grad()
def predict(
    model: nn.Module, loader: torch.utils.data.DataLoader, device: torch.device | str
) -> list[dict[str, Any]]:
    """Run the detector; one entry per readable image with boxes in original pixels.

    Returns:
        ``[{"image_id", "boxes" (D, 4) xyxy, "scores" (D,), "labels" (D,)}]`` (numpy).
    """
    model.eval()
    out: list[dict[str, Any]] = []
    for batch in loader:
        if not batch["image_ids"]:
            continue
        boxes, scores, labels, num = model(batch["images"].to(device))
        for i, image_id in enumerate(batch["image_ids"]):
            n = int(num[i])
            mapped = boxes_to_original(
                boxes[i, :n].float().cpu().numpy(),
                float(batch["scales"][i]),
                original_size=batch["sizes"][i],
            )
            out.append(
                {
                    "image_id": image_id,
                    "boxes": mapped,
                    "scores": scores[i, :n].float().cpu().numpy(),
                    "labels": labels[i, :n].cpu().numpy(),
                }
            )
    return out


def draw_detections(
    image: Image.Image,
    boxes: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    class_names: list[str],
) -> Image.Image:
    """A copy of ``image`` with ``(D, 4)`` xyxy boxes, class names and scores drawn."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    width = max(1, round(max(out.size) / 200))
    for box, label, score in zip(boxes, labels, scores, strict=True):
        colour = _COLOURS[int(label) % len(_COLOURS)]
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=width)
        name = class_names[int(label)] if 0 <= int(label) < len(class_names) else str(label)
        draw.text((x1 + 1, max(0.0, y1 - 11)), f"{name} {score:.2f}", fill=colour)
    return out


def write_visualisations(
    data: CocoDataset,
    predictions: list[dict[str, Any]],
    class_names: list[str],
    folder: str | Path,
    limit: int = 8,
    min_score: float = 0.3,
) -> list[Path]:
    """Save up to ``limit`` images with predicted boxes (score >= ``min_score``) as JPEGs."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {rec.image_id: rec.path for rec in data.images}
    written = []
    for pred in predictions[:limit]:
        keep = pred["scores"] >= min_score
        image = load_rgb(paths[pred["image_id"]])
        drawn = draw_detections(
            image, pred["boxes"][keep], pred["labels"][keep], pred["scores"][keep], class_names
        )
        path = folder / f"{pred['image_id']}.jpg"
        with atomic_path(path) as tmp:
            drawn.save(tmp, format="JPEG", quality=90)
        written.append(path)
    return written


def evaluate_detection(
    model: nn.Module,
    meta: dict[str, Any],
    data: str | Path | CocoDataset,
    out_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
) -> dict[str, Any]:
    """Score a detector with COCO mAP on ``data``, boxes mapped to original images.

    Args:
        model: the detector (``forward`` -> boxes, scores, labels, num_detections).
        meta: its checkpoint meta (img_size, mean/std, class_names).
        data: a :class:`CocoDataset` or a ``--data`` value (its validation part is used).
        out_dir: where ``metrics.json`` and ``vis/*.jpg`` go (None: nowhere).
        device: where the model runs.
        batch_size: images per forward pass.

    Returns:
        ``{"mAP", "mAP50", "mAP75", "AR100", "images", "skipped_files", "data"}``, scores in
        percent.
    """
    from simmim_deploy.core.errors import UserError
    from simmim_deploy.data.det_sources import load_detection_eval

    with tempfile.TemporaryDirectory() as tmp:
        coco = data if isinstance(data, CocoDataset) else load_detection_eval(str(data), tmp)
        if list(coco.class_names) != list(meta["class_names"]):
            raise UserError(
                f"the data's classes {coco.class_names[:5]} differ from the checkpoint's "
                f"{list(meta['class_names'])[:5]}; evaluate on data with the same categories"
            )
        skip_log = SkipLog(out_dir if out_dir is not None else tmp)
        model.to(device)
        predictions = predict(model, make_loader(coco, meta, batch_size, skip_log), device)
        skipped = skip_log.finalize()
    metrics: dict[str, Any] = map_percent(coco, predictions)
    seen = {p["image_id"] for p in predictions}
    metrics.update(images=len(seen), skipped_files=skipped, data=str(getattr(coco, "source", data)))
    if out_dir is not None:
        out = Path(out_dir)
        write_visualisations(coco, predictions, list(meta["class_names"]), out / "vis")
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def map_percent(coco: CocoDataset, predictions: list[dict[str, Any]]) -> dict[str, float]:
    """COCO mAP@[.5:.95], mAP50, mAP75 and AR@100 of ``predictions`` on the images they cover.

    In percent, the unit of every score the project reports (top-1 and mAP alike).
    """
    seen = {p["image_id"] for p in predictions}
    stats = coco_map(coco_ground_truth(coco, seen), coco_results(predictions, coco.category_ids))
    return {k: 100.0 * float(v) for k, v in stats.items()}
