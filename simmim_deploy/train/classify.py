"""Fine-tune (or linear-probe) a classifier from a SimMIM encoder, through the one engine.

``run_classify(config)`` writes into ``config.out``:

- ``best.pt``: best validation top-1 (``{"model", "meta", "metrics"}``, the format of
  :mod:`simmim_deploy.models.factory`); ``last.pt``: the resumable state (a link to the
  engine's ``checkpoints/last.pt``, which carries the same ``meta``);
- ``metrics.json`` (best and last validation scores, per-class P/R/F1, confusion matrix, data
  counts), ``confusion_matrix.png``, ``training_curves.png``, ``config.yaml`` (resolved),
  ``metrics.csv`` and ``tensorboard/`` (from the engine), ``skipped.txt`` when files were bad.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from simmim_deploy.core.config import config_to_dict
from simmim_deploy.core.run_summary import RunSummary
from simmim_deploy.data.aug_presets import resolve_aug
from simmim_deploy.train.checkpointing import BEST, BestCheckpoint, check_run_folder
from simmim_deploy.train.classify_config import (
    EPOCHS,
    LOW_RES,
    SMALL_DATA,
    WARMUP_EPOCHS,
    ClassifyConfig,
    resolve_defaults,
    small_data_defaults,
)
from simmim_deploy.train.classify_eval import make_eval_loader, plot_confusion, score
from simmim_deploy.train.driver import FinetuneTask, finetune_summary
from simmim_deploy.train.engine import fit, seed_everything
from simmim_deploy.train.metrics import plot_training_curves

__all__ = ["ClassifyConfig", "ClassifyTask", "run_classify"]


class ClassifyTask(FinetuneTask):
    """Cross-entropy (with mixup/cutmix soft targets and label smoothing) + validation top-1."""

    def __init__(
        self,
        config: ClassifyConfig,
        num_classes: int,
        val_loader: Any,
        class_names: list[str],
        meta: dict[str, Any],
        out: Path,
    ) -> None:
        from timm.data import Mixup
        from timm.loss import SoftTargetCrossEntropy

        keeper = BestCheckpoint(
            out / BEST, "top1", config.resume, keep=("top1", "top5", "loss", "epoch"),
            progress="loss",
        )  # fmt: skip
        super().__init__(config, meta, keeper, "val top-1")
        self.val_loader, self.class_names = val_loader, class_names
        self.mixup = None
        if config.uses_mixup:
            self.mixup = Mixup(
                mixup_alpha=config.mixup or 0.0,
                cutmix_alpha=config.cutmix or 0.0,
                prob=config.mixup_prob,
                switch_prob=config.mixup_switch_prob,
                label_smoothing=config.label_smoothing or 0.0,
                num_classes=num_classes,
            )
            self.criterion: nn.Module = SoftTargetCrossEntropy()
        else:
            self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing or 0.0)

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        images, labels = batch
        if self.cfg.mode == "linear":
            from simmim_deploy.models.classifier import linear_probe_train_mode

            linear_probe_train_mode(model)
        if self.mixup is not None:
            images, labels = self.mixup(images, labels)
        return self.criterion(model(images), labels), {}

    def score(self, model: nn.Module, device: torch.device) -> tuple[dict, dict[str, float]]:
        metrics = score(model, self.val_loader, self.class_names, device)
        logged = {f"val_{k}": metrics[k] for k in ("top1", "top5", "loss")}
        return metrics, logged


def checkpoint_meta(model: nn.Module, cfg: ClassifyConfig, class_names: list[str]) -> dict:
    """The ``meta`` block export and serving read (see :mod:`simmim_deploy.models.factory`)."""
    from timm.data import resolve_data_config

    from simmim_deploy.core.checkpoint_meta import CheckpointMeta
    from simmim_deploy.models.classifier import classifier_meta_kwargs

    data_config = resolve_data_config({}, model=model)
    return CheckpointMeta(
        task="classification",
        model_name=cfg.model,
        img_size=int(cfg.img_size or data_config["input_size"][-1]),
        class_names=tuple(str(c) for c in class_names),
        mean=tuple(float(v) for v in data_config["mean"]),
        std=tuple(float(v) for v in data_config["std"]),
        interpolation=str(data_config.get("interpolation", "bicubic")),
        crop_pct=float(data_config.get("crop_pct", 0.875)),
        model_kwargs=classifier_meta_kwargs(model, dict(cfg.model_kwargs)),
        head={
            "type": "linear",
            "pool": getattr(model, "global_pool", "avg"),
            "norm": "batchnorm" if cfg.head_norm else None,
        },
        pretrained=cfg.pretrained,
        train_config=config_to_dict(cfg),
    ).to_dict()


def train_transform(cfg: ClassifyConfig, meta: dict[str, Any]):  # noqa: ANN201 - Compose
    """Flips/rotations of ``aug``, RandomResizedCrop, RandAugment, random erasing via timm."""
    from simmim_deploy.data.augment import build_finetune_transform

    return build_finetune_transform(
        meta,
        int(meta["img_size"]),
        cfg.randaug,
        float(cfg.reprob or 0.0),
        cfg.hflip,
        cfg.crop_scale_min,
        aug=cfg.aug,
    )


def _epoch_history(out: Path) -> list[dict[str, float]]:
    """Per-epoch rows of ``metrics.csv`` (the engine keeps them across resumes)."""
    path = out / "metrics.csv"
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row.get("train_loss"):
                rows.append({k: float(v) for k, v in row.items() if v not in ("", None)})
    return rows


def run_classify(config: ClassifyConfig) -> RunSummary | None:
    """Fine-tune a classifier as ``config`` says; returns the summary written to metrics.json
    (None on the other processes).

    Raises:
        UserError: bad data/options, a checkpoint that does not fit, or an existing run in
            ``out`` without ``resume``.
    """
    from simmim_deploy.data.classification import ClassificationDataset, load_classification_splits
    from simmim_deploy.data.images import SkipLog
    from simmim_deploy.train import distributed as dist
    from simmim_deploy.train.driver import prepare_run

    out = Path(config.out)
    check_run_folder(out, config.resume)
    seed_everything(config.seed)
    splits = load_classification_splits(
        config.data,
        config.val_data,
        config.val_split,
        config.labels_per_class,
        config.label_fraction,
        seed=config.seed,
        split_seed=config.split_seed,
    )
    cfg, aug_note = _resolve(config, splits.train.items)
    names = splits.class_names
    model = _build_model(cfg, len(names))
    meta = checkpoint_meta(model, cfg, names)
    skip_log = SkipLog(out)
    train_set = ClassificationDataset(
        splits.train, train_transform(cfg, meta), skip_log, on_bad="substitute", seed=cfg.seed
    )
    run = prepare_run(
        cfg,
        config.warmup_epochs,
        model,
        len(train_set),
        base_epochs=EPOCHS,
        base_warmup=WARMUP_EPOCHS,
        weight_decay=float(cfg.weight_decay or 0.0),
        layer_decay=cfg.layer_decay if cfg.mode == "full" else None,
    )
    cfg, opt = run.config, run.optimization
    meta = checkpoint_meta(model, cfg, names)  # records the resolved budget
    val_loader = make_eval_loader(
        splits.val, meta, cfg.eval_batch_size or 2 * cfg.batch_size, cfg.workers, skip_log
    )
    task = ClassifyTask(cfg, len(names), val_loader, names, meta, out)
    data_note = f"{splits.description}: {len(splits.train)} train / {len(splits.val)} val images"
    if cfg.mode == "full" and config.layer_decay is None:
        why = "from scratch: no pre-trained layers to keep" if cfg.pretrained == "none" else ""
        data_note += f"; layer-wise LR decay {cfg.layer_decay:g}" + (f" ({why})" if why else "")
    notes = (data_note, aug_note, *run.notes)
    result = fit(
        model, task, train_set, run.engine, opt.optimizer, opt.scheduler, out, meta=meta,
        description=f"classify {cfg.model}", notes=notes,
    )  # fmt: skip
    summary = None
    if result.dist.is_main:
        summary = _finish(out, task, splits, skip_log.finalize(), result, run)
    dist.teardown()
    return summary


def _resolve(config: ClassifyConfig, train_items: Sequence[Any]) -> tuple[ClassifyConfig, str]:
    """``config`` with the mode, small-data and ``aug`` defaults resolved; the aug line.

    Prints (rank 0) which small-data defaults were chosen.
    """
    from simmim_deploy.data.images import median_short_side
    from simmim_deploy.train import distributed as dist

    num_train = len(train_items)
    side = median_short_side(train_items) if num_train < SMALL_DATA else None
    cfg = resolve_defaults(config, num_train, side)
    aug, aug_why = resolve_aug(cfg.aug, hflip=cfg.hflip)  # no boxes: auto is natural
    small = small_data_defaults(config, num_train, side)
    if small and dist.is_main():
        chosen = ", ".join(f"{k} {v}" for k, v in small.items())
        low_res = (
            f"; images ~{side} px (< {LOW_RES}): milder crops" if side and side < LOW_RES else ""
        )
        print(
            f"small data ({num_train} < {SMALL_DATA} training images): {chosen} "
            "(the ImageNet regularisers starve small sets; a pre-trained encoder under layer "
            f"decay gets twice the LR{low_res}; set any of them to override)",
            flush=True,
        )
    return dataclasses.replace(cfg, aug=aug), f"aug {aug} ({aug_why})"


def _build_model(cfg: ClassifyConfig, num_classes: int) -> nn.Module:
    """The classifier ``cfg`` describes (encoder weights loaded when ``pretrained`` is a path)."""
    from simmim_deploy.models.classifier import build_classifier, set_linear_probe

    model = build_classifier(
        cfg.model,
        num_classes,
        img_size=cfg.img_size,
        pretrained=cfg.pretrained,
        drop_path_rate=float(cfg.drop_path or 0.0),
        head_norm=bool(cfg.head_norm),
        **cfg.model_kwargs,
    )
    if cfg.mode == "linear":
        set_linear_probe(model)
    return model


def _finish(out, task, splits, skipped, result, run) -> RunSummary:  # noqa: ANN001
    """Write metrics.json and the plots (rank 0)."""
    summary = finetune_summary(
        "classify", task, result, run, splits.description,
        (len(splits.train), len(splits.val)), skipped, mode=run.config.mode,
        class_counts={"train": splits.train.class_counts(), "val": splits.val.class_counts()},
    )  # fmt: skip
    summary.write()
    if "confusion_matrix" in summary.best:
        plot_confusion(summary.best, splits.class_names, out)
    history = _epoch_history(out)
    if history:
        plot_training_curves(history, out / "training_curves.png")
    return summary
