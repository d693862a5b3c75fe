"""Score a classifier on labelled images: logits, metrics.json, confusion-matrix PNG.

Used after every validation epoch of ``train classify`` and by ``simmim-deploy evaluate``.
Preprocessing is the model's eval transform (resize to ``img / crop_pct``, centre crop,
normalise), built from the checkpoint meta exactly as serving rebuilds it.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from simmim_deploy.core.atomic import atomic_write_text
from simmim_deploy.data.classification import ClassificationDataset, LabelledImages
from simmim_deploy.train.metrics import classification_metrics, plot_confusion_matrix

METRICS_JSON = "metrics.json"
CONFUSION_PNG = "confusion_matrix.png"


def eval_transform(meta: dict[str, Any]):  # noqa: ANN201 - torchvision Compose
    """The eval transform ``PIL RGB -> (3, img, img)`` from checkpoint meta (data-config keys)."""
    from simmim_deploy.data.transforms import build_eval_transform

    return build_eval_transform(meta, int(meta["img_size"]))


@torch.no_grad()
def collect_logits(
    model: nn.Module, loader: DataLoader, device: torch.device | str
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``model`` over ``loader``; drop samples marked unreadable (label ``-1``).

    Returns:
        ``(logits (N, K) float32, targets (N,) int64)``.
    """
    was_training = model.training
    model.eval()
    logits, targets = [], []
    for images, labels in loader:
        out = model(images.to(device, non_blocking=True)).float().cpu()
        keep = labels >= 0
        logits.append(out[keep])
        targets.append(labels[keep])
    model.train(was_training)
    if not logits:
        return np.zeros((0, 0), np.float32), np.zeros((0,), np.int64)
    return torch.cat(logits).numpy(), torch.cat(targets).numpy().astype(np.int64)


def make_eval_loader(
    images: LabelledImages,
    meta: dict[str, Any],
    batch_size: int,
    workers: int = 0,
    skip_log: Any = None,
) -> DataLoader:
    """A deterministic DataLoader over ``images`` with the eval transform (bad files marked)."""
    dataset = ClassificationDataset(images, eval_transform(meta), skip_log, on_bad="mark")
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)


def score(
    model: nn.Module, loader: DataLoader, class_names: list[str], device: torch.device | str
) -> dict[str, Any]:
    """:func:`~simmim_deploy.train.metrics.classification_metrics` plus the mean CE loss."""
    logits, targets = collect_logits(model, loader, device)
    if len(targets) == 0:
        from simmim_deploy.core.errors import UserError

        raise UserError("no readable labelled image to evaluate on")
    metrics = classification_metrics(logits, targets, class_names)
    ce = nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(targets))
    metrics["loss"] = float(ce)
    return metrics


def plot_confusion(metrics: dict[str, Any], class_names: list[str], out_dir: str | Path) -> Path:
    """Draw ``metrics["confusion_matrix"]`` as ``out_dir/confusion_matrix.png``; return the
    folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_confusion_matrix(np.asarray(metrics["confusion_matrix"]), class_names, out / CONFUSION_PNG)
    return out


def write_report(metrics: dict[str, Any], class_names: list[str], out_dir: str | Path) -> Path:
    """Write ``metrics.json`` and ``confusion_matrix.png`` into ``out_dir``; return the JSON."""
    out = plot_confusion(metrics, class_names, out_dir)
    path = out / METRICS_JSON
    atomic_write_text(path, json.dumps(metrics, indent=2) + "\n")
    return path


def evaluate_classification(
    model: nn.Module,
    meta: dict[str, Any],
    data: str,
    out_dir: str | Path | None,
    device: torch.device | str,
    batch_size: int,
) -> dict[str, Any]:
    """Score a trained classifier on ``data`` (``builtin:NAME`` held-out part, ``val/`` or a tree).

    Args:
        model: the classifier, already on ``device``.
        meta: its checkpoint meta (class names, input size, mean/std, crop_pct).
        data: labelled images; classes are matched to ``meta["class_names"]`` by name.
        out_dir: where ``metrics.json`` and ``confusion_matrix.png`` go (None: nowhere).
        device: where the model runs.
        batch_size: images per forward pass.

    Returns:
        The metrics (top1, top5, macro_f1, per_class, confusion_matrix, loss, skipped_files).
    """
    from simmim_deploy.data.classification import load_eval_images
    from simmim_deploy.data.images import SkipLog

    class_names = list(meta["class_names"])
    images = load_eval_images(data, class_names)
    with tempfile.TemporaryDirectory() as tmp:
        skip_log = SkipLog(out_dir if out_dir is not None else tmp)
        loader = make_eval_loader(images, meta, batch_size, skip_log=skip_log)
        metrics = score(model, loader, class_names, device)
        metrics["skipped_files"] = skip_log.finalize()
    metrics["data"] = str(data)
    if out_dir is not None:
        write_report(metrics, class_names, out_dir)
    return metrics
