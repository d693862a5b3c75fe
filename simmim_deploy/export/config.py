"""``ExportConfig``: everything ``simmim-deploy export`` needs, validated on construction.

YAML profiles in the top-level ``export/`` folder fill this dataclass (``--config``); command-line
options override them. Conflicting options raise :class:`UserError` instead of being rewritten.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from simmim_deploy.core.backends import ONNX_BACKENDS
from simmim_deploy.core.config import flag_for, option
from simmim_deploy.core.errors import UserError

PRECISIONS = ("fp32", "fp16", "int8", "int8-dynamic", "int8-w7", "int8-nncf")
CALIB_METHODS = ("minmax", "entropy", "percentile")
INT8_SCOPES = ("linear", "all")
EXPORTERS = ("auto", "dynamo", "torchscript")
# --target: every artefact worth choosing among on that hardware (``--backend auto`` measures
# them on the machine that serves). CPU: static INT8 is fastest where the CPU has VNNI/AMX and
# the file TensorRT also reads; dynamic INT8 needs no calibration and was as fast or faster on
# AVX2; FP32 is the reference, and what OpenVINO runs in bf16 on CPUs with bf16 instructions;
# int8-w7 (7-bit weights) is the INT8 file OpenVINO keeps accurate on CPUs without VNNI;
# int8-nncf (OpenVINO IR by NNCF, attention products in INT8 too) was OpenVINO's fastest file on
# the AVX-512 Xeon without VNNI we measured, written when the openvino extra (nncf) is installed.
TARGETS = {"cpu": ("fp32", "int8", "int8-dynamic", "int8-w7", "int8-nncf")}
NEEDS_EXTRA = {"int8-nncf": "nncf"}  # artefacts a target writes only when this module exists


def parse_batch(text: str | Sequence[int]) -> tuple[int, int, int]:
    """``"1:8:32"`` (or a 3-sequence) -> ``(1, 8, 32)``, checked ``1 <= min <= opt <= max``."""
    if isinstance(text, str):
        parts = text.replace(",", ":").split(":")
        try:
            values = tuple(int(p) for p in parts)
        except ValueError:
            raise UserError(
                f"--batch must look like MIN:OPT:MAX (e.g. 1:8:32), got {text!r}"
            ) from None
    else:
        values = tuple(int(v) for v in text)
    if len(values) != 3:
        raise UserError(f"--batch must have three numbers MIN:OPT:MAX, got {text!r}")
    lo, opt, hi = values
    if not 1 <= lo <= opt <= hi:
        raise UserError(f"--batch needs 1 <= MIN <= OPT <= MAX, got {lo}:{opt}:{hi}")
    return lo, opt, hi


def target_precisions(target: str) -> tuple[str, ...]:
    """The artefacts ``--target`` writes with the extras installed here (the rest is logged)."""
    import importlib.util
    import logging

    missing = [p for p in TARGETS[target] if p in NEEDS_EXTRA
               and importlib.util.find_spec(NEEDS_EXTRA[p]) is None]  # fmt: skip
    if missing:
        logging.getLogger(__name__).warning(
            "--target %s: not writing %s (needs the openvino extra)", target, ", ".join(missing)
        )
    return tuple(p for p in TARGETS[target] if p not in missing)


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Parity budgets one precision must meet against PyTorch (see ``verify.py``)."""

    min_cosine: float
    max_abs: float | None = None  # None: not checked (reduced precision)
    min_top1_agreement: float | None = None  # classification
    max_metric_drop: float | None = None  # points of the task metric on labelled data
    min_box_iou: float | None = None  # detection: mean IoU of matched boxes


DEFAULT_THRESHOLDS: dict[str, Thresholds] = {
    "fp32": Thresholds(0.99999, max_abs=1e-3, min_top1_agreement=0.999, min_box_iou=0.99),
    "fp16": Thresholds(0.999, min_top1_agreement=0.98, max_metric_drop=0.5, min_box_iou=0.9),
    "int8": Thresholds(0.98, min_top1_agreement=0.9, max_metric_drop=1.5, min_box_iou=0.8),
    "int8-dynamic": Thresholds(0.98, min_top1_agreement=0.9, max_metric_drop=1.5, min_box_iou=0.8),
    "int8-w7": Thresholds(0.98, min_top1_agreement=0.9, max_metric_drop=1.5, min_box_iou=0.8),
    "int8-nncf": Thresholds(0.98, min_top1_agreement=0.9, max_metric_drop=1.5, min_box_iou=0.8),
}


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """Options of one export run (each field's help is its ``--help`` line)."""

    checkpoint: str = option(
        help="Fine-tuned best.pt (or its run folder) of train classify|detect.", positional=True
    )
    out: str = option(help="Bundle directory to create.")
    precision: tuple[str, ...] | str = option(
        ("fp32",),
        f"Artefacts to write: {'|'.join(PRECISIONS)}, a comma list (fp32, the reference, always).",
    )
    calib_data: str | None = option(
        None, "Real calibration images for static INT8: builtin:NAME or a folder."
    )
    calib_images: int = option(512, "At most this many calibration images.")
    calib_method: Literal["minmax", "entropy", "percentile"] = option(
        "minmax", "Activation range estimator of static INT8."
    )
    int8_scope: Literal["linear", "all"] = option(
        "linear",
        "linear: the weight layers only (MatMul/Gemm with weights, Conv); all: every op ONNX "
        "Runtime can quantize.",
    )
    prune: float = option(0.0, "Fraction of attention heads and MLP channels to remove.")
    prune_blocks: int = option(0, "Whole transformer blocks to drop (least important first).")
    recover_epochs: int = option(
        0, "Distillation epochs after pruning (needs --calib-data or --eval-data)."
    )
    batch: str | tuple[int, ...] = option(
        "1:8:32", "TensorRT/Triton batch profile MIN:OPT:MAX (images per call)."
    )
    eval_data: str | None = option(
        None,
        "Labelled held-out data for the task metric: top-1 (builtin:mnist, ImageFolder) or COCO "
        "mAP (COCO folder, yolo:DIR, voc:DIR, builtin:digits-det).",
    )
    verify_images: int = option(64, "Images run through PyTorch and every artefact.")
    thresholds: dict = option(
        help="Per-precision parity overrides, e.g. {int8: {min_cosine: 0.95}} (YAML only).",
        cli=False,
        default_factory=dict,
    )
    triton: bool = option(False, "Also write a Triton model repository under BUNDLE/triton.")
    opset: int = option(18, "ONNX opset (>= 17 keeps LayerNormalization a single node).")
    exporter: Literal["auto", "dynamo", "torchscript"] = option(
        "auto", "auto tries the dynamo exporter and falls back to TorchScript."
    )
    overwrite: bool = option(False, "Replace an existing bundle.")
    target: Literal["cpu"] | None = option(
        None,
        f"cpu: every CPU artefact worth choosing among ({', '.join(TARGETS['cpu'])}), each "
        "verified; --backend auto picks the fastest where it runs.",
    )

    def __post_init__(self) -> None:
        ckpt = Path(self.checkpoint)
        if not (ckpt.is_file() or (ckpt / "best.pt").is_file()):
            raise UserError(f"checkpoint not found: {ckpt} (give the best.pt of a fine-tune run)")
        self._check_precision()
        object.__setattr__(self, "batch", parse_batch(self.batch))
        if self.opset < 17:
            raise UserError(
                f"opset must be >= 17 (LayerNormalization as one node), got {self.opset}"
            )
        if not 0.0 <= self.prune < 0.9:
            raise UserError(f"--prune must be a fraction in [0, 0.9), got {self.prune}")
        if self.recover_epochs < 0 or self.prune_blocks < 0:
            raise UserError("--recover-epochs and prune_blocks must be >= 0")
        pruning = self.prune > 0 or self.prune_blocks > 0
        if self.recover_epochs and not pruning:
            raise UserError("--recover-epochs needs --prune RATIO (there is nothing to recover)")
        if self.recover_epochs and not (self.calib_data or self.eval_data):
            raise UserError("--recover-epochs needs images: give --calib-data PATH|builtin:NAME")
        if self.calib_images < 1 or self.verify_images < 1:
            raise UserError("calib_images and verify_images must be >= 1")
        self._check_thresholds()
        if Path(self.out).exists() and not self.overwrite:
            raise UserError(f"{self.out} already exists: choose another --out or pass --overwrite")

    def _check_precision(self) -> None:
        precision = (self.precision,) if isinstance(self.precision, str) else self.precision
        if self.target is not None:
            if self.target not in TARGETS:
                raise UserError(f"unknown --target {self.target!r}; choose from {list(TARGETS)}")
            if tuple(precision) not in (("fp32",), TARGETS[self.target]):
                raise UserError(
                    f"--target {self.target} writes {', '.join(TARGETS[self.target])}; "
                    "give either --target or --precision, not both"
                )
            if not self.calib_data:
                raise UserError(
                    f"--target {self.target} writes static INT8, which needs real calibration "
                    "images: add --calib-data PATH|builtin:NAME"
                )
            precision = target_precisions(self.target)
        bad = [p for p in precision if p not in PRECISIONS]
        if bad:
            raise UserError(f"unknown precision {bad[0]!r}; choose from {', '.join(PRECISIONS)}")
        # fp32 is the reference every other artefact derives from; keep the user's order after it.
        ordered = ("fp32",) + tuple(dict.fromkeys(p for p in precision if p != "fp32"))
        object.__setattr__(self, "precision", ordered)
        if {"int8", "int8-w7", "int8-nncf"} & set(ordered) and not self.calib_data:
            raise UserError(
                "--precision int8 needs real calibration images: add "
                "--calib-data PATH|builtin:NAME "
                "(or use --precision int8-dynamic, which needs none)"
            )

    def _check_thresholds(self) -> None:
        names = {f.name for f in dataclasses.fields(Thresholds)}
        for prec, values in self.thresholds.items():
            if prec not in PRECISIONS:
                raise UserError(f"thresholds: unknown precision {prec!r}")
            unknown = set(values) - names
            if unknown:
                raise UserError(f"thresholds.{prec}: unknown key {sorted(unknown)[0]!r}")

    def thresholds_for(self, precision: str) -> Thresholds:
        """Default budgets for ``precision`` with this config's overrides applied."""
        base = DEFAULT_THRESHOLDS[precision]
        return dataclasses.replace(base, **self.thresholds.get(precision, {}))


@dataclasses.dataclass(frozen=True)
class VerifyConfig:
    """Options of ``simmim-deploy verify`` (each field's help is its ``--help`` line)."""

    bundle: str = option(help="Bundle directory.", positional=True)
    data: str = option(help="builtin:NAME or an image folder (labelled adds accuracy).")
    limit: int = option(64, "Images to use.")
    reference: Literal["auto", "torch", "fp32"] = option(
        "auto", "torch (the source checkpoint), fp32 (the bundle's FP32 ONNX) or auto."
    )
    backend: str = option("ort-cpu", "Runs the artefacts: " + ", ".join(ONNX_BACKENDS) + ".")
    threads: int | None = option(None, "Inference threads.")

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise UserError(f"{flag_for(self, 'limit')} must be >= 1, got {self.limit}")
        if self.backend not in ONNX_BACKENDS:
            raise UserError(
                f"{flag_for(self, 'backend')} must be one of {', '.join(ONNX_BACKENDS)}, got "
                f"{self.backend!r}"
            )
