"""Classification metrics: top-k accuracy, confusion matrix, per-class precision/recall/F1, plots.

Pure NumPy on gathered logits/targets (a validation set fits in memory as ``(N, K)`` floats), so
the same functions score PyTorch, ONNX Runtime and TensorRT outputs. Plots use matplotlib's Agg
backend: no display is ever needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simmim_deploy.core.atomic import atomic_path


def topk_accuracy(logits: np.ndarray, targets: np.ndarray, k: int) -> float:
    """Fraction of samples whose target is among the ``k`` highest logits.

    Args:
        logits: ``(N, K)`` scores. ``k`` larger than ``K`` is clamped to ``K`` (always correct).
        targets: ``(N,)`` integer class ids.

    Returns:
        Accuracy in ``[0, 1]``; 0.0 for an empty set.
    """
    logits = np.asarray(logits)
    targets = np.asarray(targets)
    if len(targets) == 0:
        return 0.0
    k = min(k, logits.shape[1])
    # argpartition is O(N K); ties are broken arbitrarily, as in torch.topk.
    top = np.argpartition(-logits, kth=k - 1, axis=1)[:, :k]
    return float((top == targets[:, None]).any(axis=1).mean())


def confusion_matrix(preds: np.ndarray, targets: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``cm[true, pred]`` as a ``(num_classes, num_classes)`` int64 array."""
    preds = np.asarray(preds, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    flat = targets * num_classes + preds
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix ``cm[true, pred]``.

    A class never predicted has precision 0; a class with no samples has recall 0 (the
    scikit-learn ``zero_division=0`` convention), so macro averages never become NaN.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(int)}


def classification_metrics(
    logits: np.ndarray, targets: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Everything ``metrics.json`` reports for a classifier.

    Args:
        logits: ``(N, K)`` scores, ``K == len(class_names)``.
        targets: ``(N,)`` integer class ids.
        class_names: names in class-id order.

    Returns:
        Plain-Python dict: ``top1``, ``top5`` (percent), ``macro_f1``, ``num_samples``,
        ``per_class`` (name -> precision/recall/f1/support) and ``confusion_matrix`` (lists).
    """
    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    num_classes = len(class_names)
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise ValueError(f"logits must be (N, {num_classes}), got {logits.shape}")
    cm = confusion_matrix(logits.argmax(axis=1), targets, num_classes)
    scores = per_class_scores(cm)
    per_class = {
        name: {
            "precision": float(scores["precision"][i]),
            "recall": float(scores["recall"][i]),
            "f1": float(scores["f1"][i]),
            "support": int(scores["support"][i]),
        }
        for i, name in enumerate(class_names)
    }
    return {
        "top1": 100.0 * topk_accuracy(logits, targets, 1),
        "top5": 100.0 * topk_accuracy(logits, targets, 5),
        "macro_f1": float(scores["f1"].mean()) if num_classes else 0.0,
        "num_samples": int(len(targets)),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
    }


def _pyplot():  # noqa: ANN202 - matplotlib.pyplot
    import matplotlib

    matplotlib.use("Agg")  # headless servers and CI have no display
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(cm: np.ndarray, class_names: Sequence[str], path: str | Path) -> Path:
    """Write a row-normalised confusion-matrix heat map (counts annotated when small) as PNG."""
    plt = _pyplot()
    cm = np.asarray(cm)
    n = len(class_names)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    size = min(4 + 0.4 * n, 20)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    if n <= 30:  # beyond that the numbers are unreadable
        for i in range(n):
            for j in range(n):
                color = "white" if norm[i, j] > 0.5 else "black"
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8, color=color)
    ticks = range(n) if n <= 50 else []
    ax.set_xticks(list(ticks), [class_names[i] for i in ticks], rotation=90)
    ax.set_yticks(list(ticks), [class_names[i] for i in ticks])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (colour: row-normalised)")
    fig.tight_layout()
    return _save(fig, path)


def plot_training_curves(history: Sequence[dict[str, float]], path: str | Path) -> Path:
    """Plot per-epoch curves (train loss; val top-1/top-5 when present) as one PNG.

    Args:
        history: one dict per epoch, e.g. ``{"epoch": 1, "train_loss": 2.1, "val_top1": 40.0}``.
    """
    plt = _pyplot()
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    panels = {"loss": ("train_loss", "val_loss"), "val accuracy (%)": ("val_top1", "val_top5")}
    for ax, (title, keys) in zip(axes, panels.items(), strict=True):
        for key in keys:
            if any(key in h for h in history):
                ax.plot(epochs, [h.get(key, np.nan) for h in history], marker=".", label=key)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Any, path: str | Path) -> Path:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)
