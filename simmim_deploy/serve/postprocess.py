"""Post-processing: softmax top-k with class names, and boxes back in original image pixels."""

from __future__ import annotations

from typing import Any

import numpy as np

from simmim_deploy.core.boxes import Letterbox, boxes_to_original


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis; ``(B, C)`` float -> ``(B, C)`` float32."""
    z = logits.astype(np.float32) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _label(class_names: list[str], index: int) -> str:
    return class_names[index] if 0 <= index < len(class_names) else str(index)


def topk(logits: np.ndarray, k: int, class_names: list[str]) -> list[list[dict[str, Any]]]:
    """Top-k classes per image, highest probability first.

    Args:
        logits: ``(B, C)`` class logits.
        k: how many classes per image (capped at C).
        class_names: ``C`` names; a missing name falls back to the index as text.

    Returns:
        ``B`` lists of ``{"label", "index", "score"}`` with ``score`` the softmax probability.
    """
    probs = softmax(logits)
    k = max(1, min(k, probs.shape[-1]))
    # argsort on the negated row is stable, so ties keep the lower class index first.
    order = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
    return [
        [
            {"label": _label(class_names, int(i)), "index": int(i), "score": float(row[i])}
            for i in idx
        ]
        for row, idx in zip(probs, order, strict=True)
    ]


def detections(
    outputs: dict[str, np.ndarray],
    letterboxes: list[Letterbox],
    conf: float,
    class_names: list[str],
) -> list[list[dict[str, Any]]]:
    """Turn the exported detector's padded outputs into per-image box lists.

    Args:
        outputs: ``boxes (B, K, 4)`` xyxy in input pixels, ``scores (B, K)``, ``labels (B, K)``,
            ``num_detections (B,)``; rows past ``num_detections`` are padding.
        letterboxes: one :class:`Letterbox` per image.
        conf: keep boxes with ``score >= conf``.
        class_names: label names.

    Returns:
        ``B`` lists of ``{"xyxy": [x1, y1, x2, y2], "score", "label", "index"}``, best first.
    """
    boxes, scores, labels = outputs["boxes"], outputs["scores"], outputs["labels"]
    num = outputs.get("num_detections")
    results = []
    for i, lb in enumerate(letterboxes):
        n = int(num[i]) if num is not None else scores.shape[1]
        keep = np.nonzero(scores[i, :n] >= conf)[0]
        keep = keep[np.argsort(-scores[i, keep], kind="stable")]
        mapped = boxes_to_original(boxes[i, keep].reshape(-1, 4), lb.scale, lb.pad, lb.original)
        results.append(
            [
                {
                    "xyxy": [round(float(v), 2) for v in box],
                    "score": float(scores[i, j]),
                    "label": _label(class_names, int(labels[i, j])),
                    "index": int(labels[i, j]),
                }
                for box, j in zip(mapped, keep, strict=True)
            ]
        )
    return results
