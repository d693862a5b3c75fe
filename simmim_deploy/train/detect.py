"""Fine-tune a detector (encoder + neck + FCOS head) from a SimMIM encoder, through the engine.

``run_detect(config)`` writes into ``config.out``:

- ``best.pt``: best validation mAP (``{"model", "meta", "metrics"}``, the format of
  :mod:`simmim_deploy.models.factory`, ``meta["task"] == "detection"``); ``last.pt``: the
  resumable state (a link to the engine's ``checkpoints/last.pt``, which carries the same meta);
- ``metrics.json`` (best and last mAP, data counts), ``vis/*.jpg`` (validation images with the
  predicted boxes), ``config.yaml`` (resolved), ``metrics.csv`` and ``tensorboard/`` (engine),
  ``skipped.txt`` when files were bad.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from simmim_deploy.core.atomic import atomic_path, atomic_write_text
from simmim_deploy.core.config import config_to_dict, save_config
from simmim_deploy.core.errors import UserError
from simmim_deploy.data.coco_eval import coco_ground_truth, coco_map, coco_results
from simmim_deploy.models.det_loss import assign_targets, fcos_loss
from simmim_deploy.models.detector import Detector
from simmim_deploy.train.detect_config import DetectConfig, resolve_defaults
from simmim_deploy.train.detect_eval import make_loader, predict, write_visualisations
from simmim_deploy.train.engine import (
    EngineConfig,
    TrainTask,
    fit,
    seed_everything,
    steps_per_epoch,
)

__all__ = ["DetectConfig", "DetectTask", "run_detect"]

log = logging.getLogger(__name__)

BEST, LAST = "best.pt", "last.pt"


class DetectTask(TrainTask):
    """FCOS loss on letterboxed batches; validation mAP, best.pt and visualisations."""

    def __init__(
        self,
        detector: Detector,
        config: DetectConfig,
        val_data: Any,
        meta: dict[str, Any],
        out: Path,
    ) -> None:
        self.det, self.cfg, self.val_data, self.meta, self.out = (
            detector, config, val_data, meta, out)  # fmt: skip
        self.val_loader = make_loader(val_data, meta, config.eval_batch_size or config.batch_size)
        self.best: dict[str, Any] = _read_best_metrics(out / BEST) if config.resume else {}
        self.last: dict[str, Any] = {}

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        det = self.det
        raw = model(batch["images"], raw=True)  # through the (DDP/compile) wrapper
        radius = self.cfg.center_radius or None
        targets = assign_targets(
            det.points, det.point_strides, det.point_ranges, batch["boxes"], batch["labels"],
            det.num_classes, radius,
        )  # fmt: skip
        losses = fcos_loss(
            raw["cls_logits"].float(), raw["boxes"].float(), raw["centerness"].float(), targets
        )
        logs = {k: v.detach() for k, v in losses.items() if k != "loss"}
        return losses["loss"], logs

    def evaluate(self, model: nn.Module, epoch: int) -> dict[str, float]:
        done = epoch + 1
        if done % self.cfg.eval_every and done != self.cfg.epochs:
            return {}
        device = next(model.parameters()).device
        with torch.autocast(device.type, enabled=False):  # score in fp32 whatever the training
            predictions = predict(model, self.val_loader, device)
        seen = {p["image_id"] for p in predictions}
        metrics: dict[str, Any] = coco_map(
            coco_ground_truth(self.val_data, seen),
            coco_results(predictions, self.val_data.category_ids),
        )
        metrics["epoch"] = done
        self.last = metrics
        if not self.best or metrics["mAP"] >= self.best["mAP"]:
            self.best = metrics
            save_best(model, self.meta, metrics, self.out / BEST)
            write_visualisations(
                self.val_data, predictions, self.meta["class_names"], self.out / "vis"
            )
        return {"val_mAP": metrics["mAP"], "val_mAP50": metrics["mAP50"]}


def _read_best_metrics(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    return dict(torch.load(path, map_location="cpu", weights_only=True).get("metrics") or {})


def save_best(model: nn.Module, meta: dict[str, Any], metrics: dict[str, Any], path: Path) -> None:
    """Write ``{"model", "meta", "metrics"}`` atomically."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"model": state, "meta": meta, "metrics": dict(metrics)}, tmp)


def build_run_detector(cfg: DetectConfig, num_classes: int) -> Detector:
    """The detector ``cfg`` describes (encoder weights loaded when ``pretrained`` is a path)."""
    from simmim_deploy.models.detector import HeadConfig, build_detector
    from simmim_deploy.models.postprocess import PostprocessConfig

    head = HeadConfig(
        strides=tuple(cfg.strides),
        channels=cfg.neck_channels,
        num_convs=cfg.head_convs,
        range_mult=cfg.range_mult,
        center_radius=cfg.center_radius,
    )
    post = PostprocessConfig(cfg.score_thresh, cfg.nms_iou, cfg.pre_nms_topk, cfg.max_dets)
    kwargs = {**cfg.model_kwargs, "drop_path_rate": cfg.drop_path}
    return build_detector(
        cfg.model, num_classes, int(cfg.img_size or 0), cfg.pretrained, head, post, kwargs
    )


def _engine_config(cfg: DetectConfig) -> EngineConfig:
    return EngineConfig(
        epochs=cfg.epochs, batch_size=cfg.batch_size, accumulation=cfg.accumulation,
        device=cfg.device, precision=cfg.precision, compile=cfg.compile, clip_grad=cfg.clip_grad,
        num_workers=cfg.workers, seed=cfg.seed, save_every_steps=cfg.save_every_steps,
        resume=cfg.resume, stop_at_step=cfg.stop_at_step, progress=cfg.progress,
    )  # fmt: skip


def _optimizer_and_schedule(model: nn.Module, cfg: DetectConfig, steps: int) -> tuple:
    from simmim_deploy.train.optim import build_optimizer, scale_lr
    from simmim_deploy.train.schedule import build_scheduler

    world = int(os.environ.get("WORLD_SIZE", "1"))
    factor = scale_lr(1.0, cfg.batch_size, world, cfg.accumulation)
    lr = cfg.lr if cfg.lr is not None else float(cfg.base_lr or 0.0) * factor
    decay = cfg.layer_decay if cfg.layer_decay not in (None, 1.0) else None
    opt = build_optimizer(model, lr, cfg.weight_decay, (0.9, 0.999), 1e-8, layer_decay=decay)
    total = steps * cfg.epochs
    warmup = min(int(round(steps * float(cfg.warmup_epochs or 0.0))), total - 1)
    sched = build_scheduler(opt, total, warmup, "cosine", warmup_lr=lr * 1e-3, min_lr=cfg.min_lr)
    return opt, sched, lr


def _link_last(out: Path) -> None:
    """``OUT/last.pt`` -> ``checkpoints/last.pt`` (relative, so the run folder can move)."""
    from simmim_deploy.train.checkpointing import CHECKPOINT_DIR

    link = out / LAST
    if not link.is_symlink() and not link.exists():
        link.symlink_to(Path(CHECKPOINT_DIR) / LAST)


def run_detect(config: DetectConfig) -> dict[str, Any]:
    """Fine-tune a detector as ``config`` says; returns the summary written to metrics.json.

    Raises:
        UserError: bad data/options, encoder weights that do not fit, or an existing run in
            ``out`` without ``resume``.
    """
    from simmim_deploy.data.coco import DetectionDataset, collate_detection
    from simmim_deploy.data.det_sources import load_detection_splits
    from simmim_deploy.data.images import SkipLog
    from simmim_deploy.models.detector import detector_meta
    from simmim_deploy.train import distributed as dist
    from simmim_deploy.train.checkpointing import last_checkpoint_path

    cfg = resolve_defaults(config)
    out = Path(cfg.out)
    if last_checkpoint_path(out).is_file() and not cfg.resume:
        raise UserError(f"{out} already holds a run: pass --resume or choose another --out")
    seed_everything(cfg.seed)
    splits = load_detection_splits(cfg.data, cfg.val_data, out, cfg.val_split or 0.1, cfg.seed)
    model = build_run_detector(cfg, len(splits.class_names))
    meta = detector_meta(model, splits.class_names, cfg.model, dict(cfg.model_kwargs))
    meta.update(pretrained=cfg.pretrained, train_config=config_to_dict(cfg))
    skip_log = SkipLog(out)
    train_set = DetectionDataset(
        splits.train, cfg.img_size or 0, meta["mean"], meta["std"], train=True,
        skip_log=skip_log, jitter=cfg.jitter, seed=cfg.seed, hflip=cfg.hflip,
    )  # fmt: skip
    engine_cfg = _engine_config(cfg)
    optimizer, scheduler, lr = _optimizer_and_schedule(
        model, cfg, steps_per_epoch(len(train_set), engine_cfg)
    )
    task = DetectTask(model, cfg, splits.val, meta, out)
    if dist.is_main():
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        _link_last(out)
    log.info("%s, peak lr %.3g", splits.description, lr)
    result = fit(
        model, task, train_set, engine_cfg, optimizer, scheduler, out, meta=meta,
        collate_fn=collate_detection, description=f"detect {cfg.model}",
    )  # fmt: skip
    summary: dict[str, Any] = {}
    if result.dist.is_main:
        best = task.best or task.last
        summary = {
            **best,
            "best_epoch": best.get("epoch"),
            "last": dict(task.last),
            "completed": not result.stopped_early,
            "global_step": result.global_step,
            "peak_lr": lr,
            "model": cfg.model,
            "pretrained": cfg.pretrained,
            "data": splits.description,
            "train_images": len(splits.train.images),
            "val_images": len(splits.val.images),
            "skipped_files": skip_log.finalize(),
            "checkpoint": str(out / BEST),
        }
        atomic_write_text(out / "metrics.json", json.dumps(summary, indent=2) + "\n")
    dist.teardown()
    return summary
