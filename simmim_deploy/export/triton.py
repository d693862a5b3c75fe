"""A Triton Inference Server model repository from a bundle (ONNX Runtime or TensorRT backend).

Layout::

    REPO/<name>/config.pbtxt
    REPO/<name>/labels.txt
    REPO/<name>/1/model.onnx   (onnxruntime backend)  or  1/model.plan  (tensorrt backend)

Dims in ``config.pbtxt`` leave out the batch axis (``max_batch_size`` > 0 makes it implicit);
dynamic batching gathers requests up to the preferred sizes within ``max_queue_delay``.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from simmim_deploy.core.atomic import atomic_path, atomic_write_text
from simmim_deploy.core.errors import UserError

_DTYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "int64": "TYPE_INT64",
    "int32": "TYPE_INT32",
}


@dataclasses.dataclass(frozen=True)
class TritonConfig:
    """Options of ``simmim-deploy triton``.

    Attributes:
        bundle: bundle directory.
        out: model repository to write.
        backend: ``onnxruntime`` or ``tensorrt``.
        precision: which artefact (``fp32``, ``fp16``, ``int8``...) or engine precision.
        name: model name in the repository.
        max_batch_size: largest batch (default: the bundle's batch max).
        preferred_batch_sizes: dynamic batching targets (default: opt and max).
        max_queue_delay_us: how long a request may wait for others.
        instances: model instances.
        kind: ``KIND_CPU`` or ``KIND_GPU`` (default: GPU for tensorrt, CPU for onnxruntime).
    """

    bundle: str
    out: str
    backend: str = "onnxruntime"
    precision: str = "fp32"
    name: str = "simmim"
    max_batch_size: int | None = None
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 2000
    instances: int = 1
    kind: str | None = None

    def __post_init__(self) -> None:
        if self.backend not in ("onnxruntime", "tensorrt"):
            raise UserError(f"--backend must be onnxruntime or tensorrt, got {self.backend!r}")
        if self.kind not in (None, "KIND_CPU", "KIND_GPU"):
            raise UserError(f"--kind must be KIND_CPU or KIND_GPU, got {self.kind!r}")
        if self.instances < 1 or self.max_queue_delay_us < 0:
            raise UserError("instances must be >= 1 and max_queue_delay_us >= 0")


def _tensor_block(kind: str, specs: list[dict[str, Any]], label_output: str | None) -> str:
    blocks = []
    for spec in specs:
        dims = ", ".join(str(d) for d in spec["shape"][1:])
        extra = '\n    label_filename: "labels.txt"' if spec["name"] == label_output else ""
        blocks.append(
            f'  {{\n    name: "{spec["name"]}"\n    data_type: {_DTYPES[spec["dtype"]]}\n'
            f"    dims: [ {dims} ]{extra}\n  }}"
        )
    return f"{kind} [\n" + ",\n".join(blocks) + "\n]\n"


def config_pbtxt(manifest: dict[str, Any], cfg: TritonConfig) -> str:
    """The ``config.pbtxt`` text for ``manifest`` under ``cfg``."""
    max_batch = cfg.max_batch_size or int(manifest.get("batch", {}).get("max", 32))
    preferred = cfg.preferred_batch_sizes or tuple(
        sorted({int(manifest.get("batch", {}).get("opt", max_batch)), max_batch})
    )
    platform = "onnxruntime_onnx" if cfg.backend == "onnxruntime" else "tensorrt_plan"
    kind = cfg.kind or ("KIND_GPU" if cfg.backend == "tensorrt" else "KIND_CPU")
    label_output = "logits" if manifest["task"] == "classification" else None
    text = f'name: "{cfg.name}"\nplatform: "{platform}"\nmax_batch_size: {max_batch}\n'
    text += _tensor_block("input", [manifest["input"]], None)
    text += _tensor_block("output", manifest["outputs"], label_output)
    text += (
        "dynamic_batching {\n"
        f"  preferred_batch_size: [ {', '.join(str(b) for b in preferred)} ]\n"
        f"  max_queue_delay_microseconds: {cfg.max_queue_delay_us}\n"
        "}\n"
        f"instance_group [\n  {{\n    count: {cfg.instances}\n    kind: {kind}\n  }}\n]\n"
    )
    return text


def _model_file(bundle: Path, manifest: dict[str, Any], cfg: TritonConfig) -> tuple[Path, str]:
    if cfg.backend == "onnxruntime":
        art = manifest["artefacts"].get(cfg.precision)
        if art is None:
            raise UserError(
                f"the bundle has no {cfg.precision} ONNX (has {', '.join(manifest['artefacts'])})"
            )
        return bundle / art["file"], "model.onnx"
    engines = [e for e in manifest.get("engines", []) if e["precision"] == cfg.precision]
    if not engines:
        raise UserError(
            f"the bundle has no {cfg.precision} TensorRT engine: run "
            f"'simmim-deploy build {bundle} --precision {cfg.precision}' on the target GPU first"
        )
    return bundle / engines[-1]["file"], "model.plan"


def write_triton_repo(
    bundle: str | Path, out: str | Path, manifest: dict[str, Any] | None = None, **options: Any
) -> Path:
    """Write a Triton model repository for a bundle.

    Args:
        bundle: bundle directory.
        out: repository directory (the model goes in ``out/<name>``).
        manifest: the bundle manifest (read from ``bundle`` when None).
        **options: :class:`TritonConfig` fields (``backend``, ``precision``, ...).

    Returns:
        The model directory ``out/<name>``.
    """
    from simmim_deploy.core.manifest import read_manifest

    cfg = TritonConfig(bundle=str(bundle), out=str(out), **options)
    manifest = manifest if manifest is not None else read_manifest(bundle)
    src, target = _model_file(Path(bundle), manifest, cfg)
    model_dir = Path(out) / cfg.name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    with atomic_path(model_dir / "1" / target) as tmp:
        shutil.copyfile(src, tmp)
    atomic_write_text(model_dir / "labels.txt", "\n".join(manifest["class_names"]) + "\n")
    atomic_write_text(model_dir / "config.pbtxt", config_pbtxt(manifest, cfg))
    return model_dir
