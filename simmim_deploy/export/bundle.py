"""``export_bundle``: checkpoint -> verified deployment bundle, written atomically.

Steps: load the checkpoint; optionally prune (+ distil); export FP32 ONNX; derive each requested
precision with its converter; run the verification gate after every conversion; write the
manifest, ``report/parity.json`` and the resolved ``config.yaml``; optionally a Triton
repository. Everything is built inside :func:`~simmim_deploy.core.atomic.atomic_directory`, so
an export that fails or is interrupted leaves no directory that looks complete.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from simmim_deploy.core.atomic import atomic_directory, atomic_path, atomic_write_text
from simmim_deploy.core.checkpoint_meta import CheckpointMeta
from simmim_deploy.core.config import save_config
from simmim_deploy.core.data_split import DataSplit
from simmim_deploy.core.errors import UserError
from simmim_deploy.core.manifest import write_manifest
from simmim_deploy.export import facts as F
from simmim_deploy.export.config import ExportConfig
from simmim_deploy.export.converters import CONVERTERS, FILENAMES, OPENVINO_ONLY, ConvertContext
from simmim_deploy.export.det_truth import detection_map
from simmim_deploy.export.inputs import ImageSet, batch_sha256, load_image_set, preprocess
from simmim_deploy.export.onnx_export import export_onnx, ort_session, set_metadata
from simmim_deploy.export.openvino_gate import verify_on_openvino
from simmim_deploy.export.verify import (
    VerificationSet,
    compare_classification,
    ort_runner,
    raise_if_failed,
    run_batched,
    verification_set,
    verify_outputs,
)
from simmim_deploy.models.factory import load_task_checkpoint
from simmim_deploy.models.runner import TorchRunner, output_names

log = logging.getLogger(__name__)

DEFAULT_VERIFY_DATA = "builtin:photos"  # real photographs shipped with scikit-image
PARITY_FILE = "report/parity.json"
PRUNED_CHECKPOINT = "pruned.pt"


def _images(
    source: str, split: str, limit: int, meta: dict[str, Any]
) -> tuple[ImageSet, np.ndarray]:
    recorded = DataSplit.from_meta(meta)  # calibrate on the part training used, never held out
    data = load_image_set(source, split, limit, recorded=recorded)  # type: ignore[arg-type]
    if not data.images:
        raise UserError(f"no usable images in {source}")
    return data, preprocess(data.images, meta)


def _prune(
    model: torch.nn.Module,
    meta: dict,
    cfg: ExportConfig,
    calib: np.ndarray | None,
    verify_x: np.ndarray,
    out: Path,
) -> dict[str, Any]:
    from simmim_deploy.export.prune import distill, prune_model

    teacher = copy.deepcopy(model) if cfg.recover_epochs else None
    images = calib if calib is not None else verify_x
    arch = prune_model(model, int(meta["img_size"]), cfg.prune, cfg.prune_blocks, images)
    losses = []
    if teacher is not None:
        losses = distill(model, teacher, images, cfg.recover_epochs, task=meta["task"])
    meta["pruned_arch"] = arch
    pruned_meta = CheckpointMeta.from_dict(meta, cfg.checkpoint).to_dict()
    with atomic_path(out / PRUNED_CHECKPOINT) as tmp:
        torch.save({"model": model.state_dict(), "meta": pruned_meta}, tmp)
    return {
        "ratio": cfg.prune,
        "blocks_dropped": arch["dropped"],
        "recover_epochs": cfg.recover_epochs,
        "distill_losses": losses,
        "checkpoint": PRUNED_CHECKPOINT,
    }


def _stamp(path: Path, metadata: dict[str, Any]) -> None:
    proto = onnx.load(str(path))
    set_metadata(proto, metadata)
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))


def export_bundle(config: ExportConfig, on_step: Callable[[str], None] | None = None) -> Path:
    """Turn a fine-tuned checkpoint into a verified bundle at ``config.out``.

    Args:
        config: what to export and how.
        on_step: called with a short label as each step starts (the CLI's progress display).

    Returns:
        The bundle directory.

    Raises:
        UserError: bad inputs; :class:`~simmim_deploy.export.verify.VerificationError` when an
            artefact misses its parity budget (then no bundle is written).
    """
    step = on_step or (lambda _: None)
    step(f"loading {Path(config.checkpoint).name}")
    model, meta = load_task_checkpoint(config.checkpoint)
    calib = None
    calib_info: dict[str, Any] | None = None
    if config.calib_data:
        step(f"loading calibration images ({config.calib_data})")
        cdata, calib = _images(config.calib_data, "train", config.calib_images, meta)
        calib_info = {
            "source": cdata.description,
            "sha256": batch_sha256(calib),
            "num_images": len(calib),
            "method": config.calib_method,
            "scope": config.int8_scope,
            "skipped_files": cdata.skipped_files,
        }
    vsource = config.eval_data or config.calib_data or DEFAULT_VERIFY_DATA
    step(f"loading verification images ({vsource})")
    vset = verification_set(vsource, config.verify_images, meta, DataSplit.from_meta(meta))
    try:
        with atomic_directory(config.out, overwrite=config.overwrite) as tmp:
            _build(tmp, model, meta, config, calib, calib_info, vset, step)
    except FileExistsError:
        raise UserError(
            f"{config.out} already exists: choose another --out or pass --overwrite"
        ) from None
    log.info("bundle written to %s", config.out)
    return Path(config.out)


def _build(
    out: Path,
    model: torch.nn.Module,
    meta: dict,
    cfg: ExportConfig,
    calib: np.ndarray | None,
    calib_info: dict | None,
    vset: VerificationSet,
    step: Callable[[str], None],
) -> None:
    facts = F.model_facts(meta, cfg.checkpoint, cfg.batch)  # type: ignore[arg-type]
    if calib_info:
        facts["calibration"] = calib_info
    if cfg.prune or cfg.prune_blocks:
        step("pruning" + (" and distilling" if cfg.recover_epochs else ""))
        unpruned = TorchRunner(model, meta).run_batches(vset.x, batch_size=16)
        facts["pruning"] = _prune(model, meta, cfg, calib, vset.x, out)
        # The pruning budget is judged against the unpruned model, not the pruned reference.
        if vset.labels is not None:
            before = compare_classification(unpruned[0], unpruned[0], vset.labels)["top1"]
            facts["pruning"]["top1_unpruned"] = before
        if vset.truth is not None:
            facts["pruning"]["map_unpruned"] = detection_map(unpruned, vset.truth)["mAP"]
    step("PyTorch reference outputs and ONNX export")
    reference = TorchRunner(model, meta).run_batches(vset.x, batch_size=16)
    fp32 = out / FILENAMES["fp32"]
    result = export_onnx(
        model,
        int(meta["img_size"]),
        output_names(meta),
        fp32,
        opset=cfg.opset,
        exporter=cfg.exporter,
    )
    facts["export"] = {
        "exporter": result.exporter,
        "opset": cfg.opset,
        "notes": list(result.notes),
        "dynamic_axes": {"images": [0]},
    }
    facts["outputs"] = F.output_specs(ort_session(fp32), reference)
    ctx = ConvertContext(
        calib, cfg.calib_method, cfg.int8_scope,
        on_calib_batch=lambda done, total: step(f"calibrating int8: batch {done}/{total}"),
    )  # fmt: skip
    details: dict[str, dict[str, Any]] = {"fp32": {"float_ops": [], "exporter": result.exporter}}
    parity: dict[str, Any] = {
        "data": vset.data.description,
        "num_images": len(vset.x),
        "reference": "pytorch",
        "artefacts": {},
    }
    for precision in cfg.precision:
        path = out / FILENAMES[precision]
        if precision != "fp32":
            calibrating = " (calibrating)" if precision == "int8" else ""
            step(f"converting {precision}{calibrating}")
            details[precision] = CONVERTERS[precision](fp32, path, ctx)
        step(f"verifying {precision} on {len(vset.x)} images")
        entry = _gate(precision, path, reference, vset, meta["task"], cfg)
        parity["artefacts"][precision] = entry
        raise_if_failed(entry)
        details[precision]["thresholds"] = entry["thresholds"]
        details[precision]["verified_on"] = entry.pop("verified_on")
    artefacts = {}
    for precision in cfg.precision:
        path = out / FILENAMES[precision]
        if precision not in OPENVINO_ONLY:  # an IR carries no ONNX metadata_props
            float_ops = details[precision].get("float_ops", [])
            _stamp(path, F.metadata_for(facts, precision, float_ops))
        artefacts[precision] = F.artefact_entry(path, precision, details[precision])
    manifest = {**facts, "artefacts": artefacts, "engines": []}
    (out / "report").mkdir(exist_ok=True)
    atomic_write_text(out / PARITY_FILE, json.dumps(parity, indent=2) + "\n")
    save_config(cfg, out / "config.yaml")
    if cfg.triton:
        from simmim_deploy.export.triton import bundle_repo_options, write_triton_repo

        options = bundle_repo_options(cfg.precision)
        write_triton_repo(out, out / "triton", manifest=manifest, **options)
    write_manifest(out, manifest)
    _make_readable(out)


def _gate(
    precision: str,
    path: Path,
    reference: list[np.ndarray],
    vset: VerificationSet,
    task: str,
    cfg: ExportConfig,
) -> dict[str, Any]:
    """The parity entry of one artefact on ONNX Runtime, then on OpenVINO (an IR: OpenVINO only).

    ``verified_on`` in the entry lists the runtimes whose outputs passed; the entry's ``passed``
    is the primary runtime's (ONNX Runtime; OpenVINO for an IR), whose miss fails the export.
    """
    budget, reduced = cfg.thresholds_for(precision), cfg.thresholds_for("fp16")
    if precision in OPENVINO_ONLY:
        entry = verify_on_openvino(precision, path, reference, vset, task, budget, reduced)
        if entry is None:
            raise UserError(f"--precision {precision} needs the openvino extra to verify it")
        entry["verified_on"] = [entry["runtime"]] if entry["passed"] else []
        return entry
    outputs = run_batched(ort_runner(path), vset.x)
    entry = verify_outputs(
        precision, path.name, reference, outputs, task, budget, vset.labels, vset.truth
    )
    entry["verified_on"] = ["onnxruntime"]
    ov = verify_on_openvino(precision, path, reference, vset, task, budget, reduced)
    if ov is not None:
        entry["openvino"] = ov
        if ov["passed"]:
            entry["verified_on"].append(ov["runtime"])
    return entry


def _make_readable(root: Path) -> None:
    """Temp files are created 0600; a bundle is meant to be copied and served by others."""
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
