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

from pathlib import Path
from typing import Any

import torch
from torch import nn

from simmim_deploy.core.config import config_to_dict
from simmim_deploy.core.run_summary import RunSummary
from simmim_deploy.models.centernet_loss import centernet_loss
from simmim_deploy.models.det_loss import assign_targets, fcos_loss
from simmim_deploy.models.detector import Detector
from simmim_deploy.train.checkpointing import BEST, BestCheckpoint, check_run_folder
from simmim_deploy.train.detect_config import EPOCHS, WARMUP_EPOCHS, DetectConfig, resolve_defaults
from simmim_deploy.train.detect_eval import make_loader, map_percent, predict, write_visualisations
from simmim_deploy.train.driver import FinetuneTask, finetune_summary
from simmim_deploy.train.engine import fit, seed_everything

__all__ = ["DetectConfig", "DetectTask", "run_detect"]


class DetectTask(FinetuneTask):
    """FCOS or CenterNet loss on letterboxed batches; validation mAP and visualisations."""

    def __init__(
        self,
        detector: Detector,
        config: DetectConfig,
        val_data: Any,
        meta: dict[str, Any],
        out: Path,
    ) -> None:
        # ties win: while mAP is still 0, the latest (most trained) model is kept
        keeper = BestCheckpoint(out / BEST, "mAP", config.resume, ties_win=True)
        super().__init__(config, meta, keeper, "val mAP")
        self.det, self.val_data, self.out = detector, val_data, out
        self.val_loader = make_loader(val_data, meta, config.eval_batch_size or config.batch_size)
        self.predictions: Any = None

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        det = self.det
        raw = model(batch["images"], raw=True)  # through the (DDP/compile) wrapper
        if det.centernet:
            losses = centernet_loss(
                raw["heat"], raw["size"], raw["offset"], batch["boxes"], batch["labels"],
                det.head_cfg.strides[0],
            )  # fmt: skip
            return losses["loss"], {k: v.detach() for k, v in losses.items() if k != "loss"}
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

    def score(self, model: nn.Module, device: torch.device) -> tuple[dict, dict[str, float]]:
        self.predictions = predict(model, self.val_loader, device)
        metrics: dict[str, Any] = map_percent(self.val_data, self.predictions)
        return metrics, {"val_mAP": metrics["mAP"], "val_mAP50": metrics["mAP50"]}

    def on_best(self) -> None:
        write_visualisations(
            self.val_data, self.predictions, self.meta["class_names"], self.out / "vis"
        )


def build_run_detector(cfg: DetectConfig, num_classes: int) -> Detector:
    """The detector ``cfg`` describes (encoder weights loaded when ``pretrained`` is a path)."""
    from simmim_deploy.models.detector import HeadConfig, build_detector
    from simmim_deploy.models.postprocess import PostprocessConfig

    head = HeadConfig(
        type=cfg.head,
        strides=tuple(cfg.strides or ()),
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


def plan_run_detector(cfg: DetectConfig, train: Any) -> tuple[DetectConfig, str]:
    """``cfg`` with ``head``, ``strides``, ``jitter`` and ``aug`` chosen from the training boxes
    when left to auto, and the one-line reason (:mod:`simmim_deploy.models.det_plan`)."""
    import dataclasses

    from simmim_deploy.data.aug_presets import resolve_aug
    from simmim_deploy.models.det_plan import (
        box_statistics,
        choose_jitter,
        encoder_strides,
        is_small_dense,
        plan_head,
    )

    size = int(cfg.img_size or 0)
    allowed, hierarchical = encoder_strides(cfg.model, size, dict(cfg.model_kwargs))
    stats = box_statistics(train.images, size)
    plan = plan_head(stats, allowed, cfg.head, cfg.strides, hierarchical)
    note = f"head: {plan.reason}"
    jitter = cfg.jitter
    if jitter is None:
        jitter, why = choose_jitter(stats)
        note += f"; {why}"
    aug, why = resolve_aug(cfg.aug, is_small_dense(stats), cfg.hflip)
    note += f"; aug {aug} ({why})"
    cfg = dataclasses.replace(cfg, head=plan.type, strides=plan.strides, jitter=jitter, aug=aug)
    return cfg, note


def run_detect(config: DetectConfig) -> RunSummary | None:
    """Fine-tune a detector as ``config`` says; returns the summary written to metrics.json
    (None on the other processes).

    Raises:
        UserError: bad data/options, encoder weights that do not fit, or an existing run in
            ``out`` without ``resume``.
    """
    from simmim_deploy.data.coco import DetectionDataset, collate_detection
    from simmim_deploy.data.det_sources import load_detection_splits
    from simmim_deploy.data.images import SkipLog
    from simmim_deploy.models.detector import detector_meta
    from simmim_deploy.train import distributed as dist
    from simmim_deploy.train.driver import prepare_run

    cfg = resolve_defaults(config)
    out = Path(cfg.out)
    check_run_folder(out, cfg.resume)
    seed_everything(cfg.seed)
    splits = load_detection_splits(cfg.data, cfg.val_data, out, cfg.val_split or 0.1, cfg.seed)
    cfg, head_note = plan_run_detector(cfg, splits.train)
    model = build_run_detector(cfg, len(splits.class_names))
    meta = detector_meta(model, splits.class_names, cfg.model, dict(cfg.model_kwargs))
    meta.update(pretrained=cfg.pretrained, train_config=config_to_dict(cfg))
    skip_log = SkipLog(out)
    train_set = DetectionDataset(
        splits.train, cfg.img_size or 0, meta["mean"], meta["std"], train=True,
        skip_log=skip_log, jitter=cfg.jitter, seed=cfg.seed, hflip=cfg.hflip, aug=cfg.aug,
    )  # fmt: skip
    run = prepare_run(
        cfg, config.warmup_epochs, model, len(train_set), base_epochs=EPOCHS,
        base_warmup=WARMUP_EPOCHS, weight_decay=cfg.weight_decay, layer_decay=cfg.layer_decay,
    )  # fmt: skip
    cfg, opt = run.config, run.optimization
    meta.update(train_config=config_to_dict(cfg))  # records the resolved budget
    task = DetectTask(model, cfg, splits.val, meta, out)
    result = fit(
        model, task, train_set, run.engine, opt.optimizer, opt.scheduler, out, meta=meta,
        collate_fn=collate_detection, description=f"detect {cfg.model}",
        notes=(splits.description, head_note, *run.notes),
    )  # fmt: skip
    summary = None
    if result.dist.is_main:
        counts = (len(splits.train.images), len(splits.val.images))
        summary = finetune_summary(
            "detect", task, result, run, splits.description, counts, skip_log.finalize()
        )
        summary.write()
    dist.teardown()
    return summary
