"""Verification gate: every exported artefact against PyTorch, on the same real images.

Classification: max abs/rel error, cosine similarity and top-1 agreement of the logits, plus
top-1 accuracy on labelled data (its drop in points against PyTorch). Detection: boxes matched
to the reference detections (same class, greedy by IoU) give the mean matched IoU and the share
of reference boxes found, plus COCO mAP against annotations when the verification data has them
(its drop in points; :mod:`simmim_deploy.export.det_truth`). An artefact that misses its
precision's budget fails with one line that names the worst output; nothing is shipped.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from simmim_deploy.core.data_split import DataSplit
from simmim_deploy.core.errors import UserError
from simmim_deploy.core.preprocess import PreprocessSpec
from simmim_deploy.export.config import Thresholds
from simmim_deploy.export.det_truth import DetectionTruth, detection_map, load_detection_truth
from simmim_deploy.export.inputs import ImageSet, load_image_set, preprocess

log = logging.getLogger(__name__)

Runner = Callable[[np.ndarray], list[np.ndarray]]


class VerificationError(UserError):
    """An artefact missed its parity budget (one-line message naming the worst output)."""


@dataclasses.dataclass(frozen=True)
class VerificationSet:
    """The held-out images an export is verified on, preprocessed, with what scores them.

    Attributes:
        data: the decoded images and where they come from.
        x: float32 ``(N, 3, S, S)`` model inputs.
        labels: class ids (classification data with the checkpoint's classes), else None.
        truth: annotations (detection data with the checkpoint's categories), else None.
    """

    data: ImageSet
    x: np.ndarray
    labels: np.ndarray | None = None
    truth: DetectionTruth | None = None


def verification_set(
    source: str, limit: int, meta: dict[str, Any], recorded: DataSplit | None = None
) -> VerificationSet:
    """Load up to ``limit`` held-out images of ``source`` for ``meta``'s task.

    ``recorded`` is the split the checkpoint's training run used: on its training data, the
    images it held out are the ones scored.
    """
    if meta["task"] == "detection":
        found = load_detection_truth(source, limit, meta, recorded)
        if found is not None:
            return VerificationSet(*found[:2], truth=found[2])
    data = load_image_set(source, "val", limit, recorded=recorded)
    if not data.images:
        raise UserError(f"no usable images in {source}")
    labels = None
    if meta["task"] == "classification" and data.labels is not None:
        names = [str(c) for c in meta.get("class_names", [])]
        if [str(c) for c in data.class_names or []] == names:
            labels = data.labels
        else:
            log.warning("verification data classes differ from the checkpoint's: no accuracy")
    return VerificationSet(data, preprocess(data.images, meta), labels)


def run_batched(runner: Runner, images: np.ndarray, batch_size: int = 16) -> list[np.ndarray]:
    """Run ``images`` through ``runner`` in chunks; concatenate each output."""
    chunks = [runner(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    return [np.concatenate([c[k] for c in chunks]) for k in range(len(chunks[0]))]


def ort_runner(path: str | Path) -> Runner:
    """``runner(batch) -> outputs`` for an ONNX file on the ONNX Runtime CPU provider."""
    from simmim_deploy.export.onnx_export import ort_session

    sess = ort_session(Path(path))
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})


def _cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(den > 0, num / np.maximum(den, 1e-30), (a == b).all(1).astype(np.float64))


def compare_classification(
    ref: np.ndarray, got: np.ndarray, labels: np.ndarray | None = None
) -> dict[str, float]:
    """Parity of logits ``(N, C)`` (and top-1 accuracy in % when ``labels`` are given)."""
    diff = np.abs(got.astype(np.float64) - ref)
    cos = _cosine_rows(ref, got)
    out = {
        "max_abs": float(diff.max()),
        "max_rel": float(diff.max() / max(np.abs(ref).max(), 1e-12)),
        "cosine_mean": float(cos.mean()),
        "cosine_min": float(cos.min()),
        "worst_sample": int(cos.argmin()),
        "top1_agreement": float((ref.argmax(1) == got.argmax(1)).mean()),
    }
    if labels is not None:
        known = labels >= 0
        out["top1_reference"] = float((ref.argmax(1) == labels)[known].mean() * 100)
        out["top1"] = float((got.argmax(1) == labels)[known].mean() * 100)
        out["top1_drop"] = out["top1_reference"] - out["top1"]
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of xyxy boxes ``a (N, 4)`` and ``b (M, 4)``."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None] - inter
    # Degenerate (zero-area) boxes: identical ones count as a perfect match, not IoU 0.
    same = (np.abs(a[:, None, :] - b[None, :, :]) <= 1e-3).all(-1)
    return np.where(union > 1e-9, inter / np.maximum(union, 1e-9), same.astype(np.float64))


def compare_detection(ref: list[np.ndarray], got: list[np.ndarray]) -> dict[str, float]:
    """Match each reference detection to the artefact's (same label, greedy by IoU).

    Args:
        ref, got: ``[boxes (N, K, 4), scores (N, K), labels (N, K), num_detections (N,)]``.

    Returns:
        ``box_iou`` (mean IoU over reference boxes, 0 for a missed one), ``recall_at_0.5``,
        ``count_agreement`` (images with the same number of detections) and ``score_max_abs``.
    """
    ious, counts_equal, score_err = [], [], []
    for i in range(len(ref[0])):
        nr, ng = int(ref[3][i]), int(got[3][i])
        counts_equal.append(nr == ng)
        rb, rl, rs = ref[0][i, :nr], ref[2][i, :nr], ref[1][i, :nr]
        gb, gl, gs = got[0][i, :ng], got[2][i, :ng], got[1][i, :ng]
        free = np.ones(ng, bool)
        iou = _iou(rb, gb) if nr and ng else np.zeros((nr, ng))
        for r in range(nr):
            cand = np.where(free & (gl == rl[r]))[0]
            if len(cand) == 0:
                ious.append(0.0)
                continue
            j = cand[iou[r, cand].argmax()]
            free[j] = False
            ious.append(float(iou[r, j]))
            score_err.append(abs(float(rs[r]) - float(gs[j])))
    ious_arr = np.asarray(ious) if ious else np.ones(1)
    return {
        "box_iou": float(ious_arr.mean()),
        "recall_at_0.5": float((ious_arr >= 0.5).mean()),
        "count_agreement": float(np.mean(counts_equal)),
        "score_max_abs": float(max(score_err, default=0.0)),
        "reference_boxes": len(ious),
    }


def compare_map(
    ref: list[np.ndarray], got: list[np.ndarray], truth: DetectionTruth
) -> dict[str, float]:
    """COCO mAP (%) of the reference and of the artefact on annotated images, and the drop."""
    before, after = detection_map(ref, truth), detection_map(got, truth)
    return {
        "map_reference": before["mAP"],
        "map": after["mAP"],
        "map50_reference": before["mAP50"],
        "map50": after["mAP50"],
        "map_drop": before["mAP"] - after["mAP"],
    }


def check_thresholds(metrics: dict[str, float], t: Thresholds, task: str) -> list[str]:
    """The budgets ``metrics`` misses, as short phrases (empty: passed)."""
    fails = []
    if task == "detection":
        if t.min_box_iou is not None and metrics["box_iou"] < t.min_box_iou:
            fails.append(f"boxes matched IoU {metrics['box_iou']:.4f} < {t.min_box_iou}")
        drop = metrics.get("map_drop")
        if t.max_metric_drop is not None and drop is not None and drop > t.max_metric_drop:
            fails.append(f"mAP drop {drop:.2f} pt > {t.max_metric_drop} pt")
        return fails
    if metrics["cosine_mean"] < t.min_cosine:
        fails.append(
            f"logits cosine {metrics['cosine_mean']:.6f} < {t.min_cosine} "
            f"(worst sample {metrics['worst_sample']}: {metrics['cosine_min']:.4f})"
        )
    if t.max_abs is not None and metrics["max_abs"] > t.max_abs:
        fails.append(f"logits max abs error {metrics['max_abs']:.2e} > {t.max_abs:g}")
    if t.min_top1_agreement is not None and metrics["top1_agreement"] < t.min_top1_agreement:
        fails.append(
            f"logits top-1 agreement {metrics['top1_agreement']:.3f} < {t.min_top1_agreement}"
        )
    drop = metrics.get("top1_drop")
    if t.max_metric_drop is not None and drop is not None and drop > t.max_metric_drop:
        fails.append(f"top-1 drop {drop:.2f} pt > {t.max_metric_drop} pt")
    return fails


def verify_outputs(
    precision: str,
    file: str,
    reference: list[np.ndarray],
    outputs: list[np.ndarray],
    task: str,
    thresholds: Thresholds,
    labels: np.ndarray | None = None,
    truth: DetectionTruth | None = None,
) -> dict[str, Any]:
    """Compare one artefact's outputs with the reference and apply its budget.

    Args:
        labels: class ids of the images (classification accuracy and its drop).
        truth: annotations of the images (detection mAP and its drop).

    Returns:
        The ``report/parity.json`` entry: metrics, thresholds, ``passed`` and ``failures``.
    """
    if task == "detection":
        metrics = compare_detection(reference, outputs)
        if truth is not None:
            metrics.update(compare_map(reference, outputs, truth))
    else:
        metrics = compare_classification(reference[0], outputs[0], labels)
    fails = check_thresholds(metrics, thresholds, task)
    return {
        "file": file,
        "precision": precision,
        "passed": not fails,
        "failures": fails,
        "metrics": metrics,
        "thresholds": dataclasses.asdict(thresholds),
    }


def raise_if_failed(entry: dict[str, Any]) -> None:
    """Raise :class:`VerificationError` with one line naming the worst output of ``entry``."""
    if not entry["passed"]:
        raise VerificationError(
            f"{entry['precision']} artefact {entry['file']} failed verification: "
            f"{entry['failures'][0]}; nothing was shipped (loosen thresholds.{entry['precision']} "
            "in the export profile only if this is expected)"
        )


def verify_bundle(
    bundle: str | Path,
    data: str,
    limit: int = 64,
    reference: str = "auto",
    open_runner: Callable[[Path], Runner] | None = None,
    runner_name: str = "onnxruntime",
    on_step: Callable[[str], None] | None = None,
    inference: str = "f32",
) -> dict[str, Any]:
    """Re-verify every ONNX artefact of a bundle on images from ``data``.

    Args:
        bundle: bundle directory.
        data: ``builtin:NAME`` or an image folder (labelled ones add the task metric).
        limit: images to use.
        reference: ``torch`` (the source checkpoint, or the bundle's pruned one), ``fp32`` (the
            bundle's FP32 ONNX) or ``auto`` (torch when the checkpoint exists, else fp32).
        open_runner: ``open_runner(onnx_path) -> runner`` that runs the artefacts (default: ONNX
            Runtime CPU, as the export gate does; the CLI passes e.g. OpenVINO's).
        runner_name: what ``open_runner`` runs on, recorded in the report.
        inference: ``bf16`` when ``open_runner`` infers FP32 files in bf16 (OpenVINO on a CPU
            with bf16 instructions): the FP32 file then gets the FP16 budget, as at export.
        on_step: called with a short label as each step starts (the CLI's progress display).

    Returns:
        The parity report (also written to ``BUNDLE/report/parity.json``).

    Raises:
        VerificationError: an artefact misses its budget (recorded thresholds or defaults).
    """
    import json

    from simmim_deploy.core.atomic import atomic_write_text
    from simmim_deploy.core.manifest import read_manifest
    from simmim_deploy.export.config import DEFAULT_THRESHOLDS

    step = on_step or (lambda _: None)
    root = Path(bundle)
    manifest = read_manifest(root)
    meta = _meta_from_manifest(manifest)
    step(f"loading up to {limit} images ({data})")
    vset = verification_set(data, limit, meta, DataSplit.from_dict(manifest.get("data_split")))
    ref_runner, ref_name = _reference_runner(root, manifest, reference)
    step(f"reference outputs ({ref_name})")
    ref = run_batched(ref_runner, vset.x)
    report: dict[str, Any] = {
        "data": vset.data.description,
        "num_images": len(vset.x),
        "reference": ref_name,
        "runtime": runner_name if inference == "f32" else f"{runner_name}/{inference}",
        "artefacts": {},
    }
    from simmim_deploy.export.openvino_gate import openvino_budget

    def budget(precision: str) -> Thresholds:
        recorded = manifest["artefacts"].get(precision, {}).get("thresholds")
        return Thresholds(**recorded) if recorded else DEFAULT_THRESHOLDS[precision]

    for precision, art in manifest["artefacts"].items():
        t = openvino_budget(precision, inference, budget(precision), budget("fp16"))
        step(f"verifying {precision} on {len(vset.x)} images")
        out = run_batched(_artefact_runner(root / art["file"], open_runner), vset.x)
        report["artefacts"][precision] = verify_outputs(
            precision, art["file"], ref, out, manifest["task"], t, vset.labels, vset.truth
        )
    atomic_write_text(root / "report" / "parity.json", json.dumps(report, indent=2) + "\n")
    for entry in report["artefacts"].values():
        raise_if_failed(entry)
    return report


def _artefact_runner(path: Path, open_runner: Callable[[Path], Runner] | None) -> Runner:
    """``open_runner`` (default ONNX Runtime); an OpenVINO IR (``.xml``) runs on OpenVINO, the
    only runtime that reads it."""
    if path.suffix == ".xml":
        from simmim_deploy.export.openvino_gate import openvino_runner

        return openvino_runner(path)[0]
    return (open_runner or ort_runner)(path)


def _meta_from_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """What :func:`verification_set` reads of a checkpoint meta, from the manifest's record."""
    spec = PreprocessSpec.from_manifest(manifest)
    return {
        "task": manifest["task"],
        "class_names": manifest["class_names"],
        "img_size": spec.input_hw[0],
        "preprocess": spec,
    }


def _reference_runner(root: Path, manifest: dict[str, Any], reference: str) -> tuple[Runner, str]:
    pruned = root / manifest.get("pruning", {}).get("checkpoint", "pruned.pt")
    source = pruned if pruned.is_file() else Path(manifest["source_checkpoint"]["path"])
    if reference in ("torch", "auto") and source.is_file():
        from simmim_deploy.models.runner import TorchRunner

        return TorchRunner.from_checkpoint(source), f"pytorch ({source.name})"
    if reference == "torch":
        raise UserError(f"the source checkpoint {source} is gone: use --reference fp32")
    return ort_runner(root / manifest["artefacts"]["fp32"]["file"]), "fp32 onnx"
