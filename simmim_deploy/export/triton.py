"""A Triton Inference Server model repository from a bundle (ONNX Runtime or TensorRT backend).

Layout::

    REPO/<name>/config.pbtxt
    REPO/<name>/labels.txt
    REPO/<name>/1/model.onnx   (onnxruntime backend)  or  1/model.plan  (tensorrt backend)

Every tensor's name, data type and dims come from the ONNX file itself (for an engine: the ONNX
it was built from), so the config cannot disagree with the model. Dims leave out the batch axis
(``max_batch_size`` > 0 makes it implicit); a tensor that is only a batch axis (the detector's
``num_detections``, shape ``[batch]``) is ``dims: [ 1 ]`` with ``reshape: { shape: [ ] }``, since
Triton refuses an empty ``dims``. Dynamic batching gathers requests up to the preferred sizes
within ``max_queue_delay``. Model configuration reference:
https://github.com/triton-inference-server/server/blob/main/docs/user_guide/model_configuration.md
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from simmim_deploy.core.atomic import atomic_write_text
from simmim_deploy.core.config import flag_for, option
from simmim_deploy.core.errors import UserError

# onnx.TensorProto element types -> Triton data types.
_ONNX_TO_TRITON = {
    1: "TYPE_FP32",
    2: "TYPE_UINT8",
    3: "TYPE_INT8",
    5: "TYPE_INT16",
    6: "TYPE_INT32",
    7: "TYPE_INT64",
    9: "TYPE_BOOL",
    10: "TYPE_FP16",
    11: "TYPE_FP64",
    16: "TYPE_BF16",
}
BACKENDS = {
    "onnxruntime": ("onnxruntime_onnx", "model.onnx"),
    "tensorrt": ("tensorrt_plan", "model.plan"),
}
KINDS = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}


@dataclasses.dataclass(frozen=True)
class TritonConfig:
    """Options of ``simmim-deploy triton`` (each field's help is its ``--help`` line)."""

    bundle: str = option(help="Bundle directory.", positional=True)
    out: str = option(help="Model repository to write (other models in it are left alone).")
    backend: Literal["onnxruntime", "tensorrt"] = option("onnxruntime", "Triton backend.")
    precision: str = option("fp32", "Artefact (fp32, fp16, int8...) or engine precision.")
    name: str = option("simmim", "Model name in the repository.")
    max_batch_size: int | None = option(
        None,
        "Most images one dynamic batch holds (Triton's max_batch_size; default: the bundle's max).",
        flag="--max-batch",
        old_flags=("--max-batch-size",),
    )
    preferred_batch_sizes: tuple[int, ...] = option(
        (), "Dynamic batching targets (default: the bundle's opt and max)."
    )
    max_queue_delay_us: int = option(2000, "How long a request may wait for others, in us.")
    instances: int = option(1, "Model instances (per GPU for gpu).")
    kind: Literal["cpu", "gpu"] | None = option(
        None, "cpu or gpu instances (default: gpu for tensorrt, cpu for onnxruntime)."
    )
    overwrite: bool = option(False, "Replace OUT/NAME if it exists.")

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise UserError(f"--backend must be onnxruntime or tensorrt, got {self.backend!r}")
        if self.kind not in (None, *KINDS):
            raise UserError(f"--kind must be cpu or gpu, got {self.kind!r}")
        if self.backend == "tensorrt" and self.kind == "cpu":
            raise UserError("--kind cpu cannot run a TensorRT engine: use --kind gpu")
        for name in ("instances", "max_batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"{flag_for(self, name)} must be >= 1, got {value}")
        if self.max_queue_delay_us < 0:
            raise UserError(f"--max-queue-delay-us must be >= 0, got {self.max_queue_delay_us}")
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise UserError(f"--name {self.name!r} is not a usable model folder name")

    @property
    def instance_kind(self) -> str:
        return KINDS[self.kind or ("gpu" if self.backend == "tensorrt" else "cpu")]


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One model input/output as Triton sees it: non-batch ``dims`` (-1 = variable)."""

    name: str
    data_type: str
    dims: tuple[int, ...]


def onnx_io(path: str | Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of an ONNX file after shape inference, batch axis removed.

    Shape inference resolves axes the exporter left symbolic (the detector's top-K); Triton's
    backends compare the config with those resolved shapes, so ``-1`` stays only where the
    model itself is variable.

    Raises:
        UserError: a tensor whose first axis is not a symbolic batch, or an unsupported type.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graph = onnx.shape_inference.infer_shapes(model, strict_mode=False).graph
    weights = {init.name for init in graph.initializer}

    def spec(value: Any) -> TensorSpec:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        if not dims or dims[0] != -1:
            raise UserError(
                f"{Path(path).name}: '{value.name}' has no dynamic batch axis (shape {dims}); "
                "re-export the bundle (only the batch is dynamic)"
            )
        if tensor.elem_type not in _ONNX_TO_TRITON:
            raise UserError(f"{Path(path).name}: '{value.name}' has a type Triton lacks")
        return TensorSpec(value.name, _ONNX_TO_TRITON[tensor.elem_type], tuple(dims[1:]))

    inputs = [spec(v) for v in graph.input if v.name not in weights]
    return inputs, [spec(v) for v in graph.output]


def _tensor_block(kind: str, specs: list[TensorSpec], label_output: str | None) -> str:
    blocks = []
    for spec in specs:
        # Triton needs non-empty dims: a batch-only tensor is [1] to clients, [] to the model.
        dims = ", ".join(str(d) for d in spec.dims) if spec.dims else "1"
        lines = [
            f'    name: "{spec.name}"',
            f"    data_type: {spec.data_type}",
            f"    dims: [ {dims} ]",
        ]
        if not spec.dims:
            lines.append("    reshape: { shape: [ ] }")
        if spec.name == label_output:
            lines.append('    label_filename: "labels.txt"')
        blocks.append("  {\n" + "\n".join(lines) + "\n  }")
    return f"{kind} [\n" + ",\n".join(blocks) + "\n]\n"


def config_pbtxt(
    manifest: dict[str, Any],
    cfg: TritonConfig,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
) -> str:
    """The ``config.pbtxt`` text (protobuf text format of Triton's ``ModelConfig``)."""
    batch = manifest.get("batch", {})
    max_batch = cfg.max_batch_size or int(batch.get("max", 32))
    preferred = cfg.preferred_batch_sizes or tuple(
        sorted({min(int(batch.get("opt", max_batch)), max_batch), max_batch})
    )
    if any(not 1 <= b <= max_batch for b in preferred):
        raise UserError(f"preferred batch sizes {preferred} must lie in 1..{max_batch}")
    label_output = None
    if manifest["task"] == "classification" and outputs:
        label_output = outputs[0].name
    text = (
        f'name: "{cfg.name}"\nplatform: "{BACKENDS[cfg.backend][0]}"\nmax_batch_size: {max_batch}\n'
    )
    text += _tensor_block("input", inputs, None)
    text += _tensor_block("output", outputs, label_output)
    text += (
        "dynamic_batching {\n"
        f"  preferred_batch_size: [ {', '.join(str(b) for b in preferred)} ]\n"
        f"  max_queue_delay_microseconds: {cfg.max_queue_delay_us}\n"
        "}\n"
        f"instance_group [\n  {{\n    count: {cfg.instances}\n    kind: {cfg.instance_kind}\n"
        "  }\n]\n"
    )
    return text


def _model_files(bundle: Path, manifest: dict[str, Any], cfg: TritonConfig) -> tuple[Path, Path]:
    """(file to copy, ONNX file that defines its I/O)."""
    if cfg.backend == "onnxruntime":
        art = manifest["artefacts"].get(cfg.precision)
        if art is None or not str(art.get("file", "")).endswith(".onnx"):
            have = ", ".join(manifest["artefacts"])
            raise UserError(f"the bundle has no {cfg.precision} ONNX file (it has {have})")
        return bundle / art["file"], bundle / art["file"]
    engines = [e for e in manifest.get("engines", []) if e["precision"] == cfg.precision]
    if not engines:
        raise UserError(
            f"the bundle has no {cfg.precision} TensorRT engine: run "
            f"'simmim-deploy build {bundle} --precision {cfg.precision}' on the target GPU first"
        )
    engine = engines[-1]
    source = engine.get("onnx") or manifest["artefacts"].get(cfg.precision, {}).get("file")
    if not source:
        raise UserError(f"engine {engine['file']} does not name the ONNX file it was built from")
    return bundle / engine["file"], bundle / source


def bundle_repo_options(precisions: tuple[str, ...]) -> dict[str, str]:
    """What ``export --triton`` writes: the FP16 ONNX on GPU instances when the export made one
    (FP16 is a GPU format: the ``gpu_fp16`` profile), else FP32 on CPU instances."""
    if "fp16" in precisions:
        return {"precision": "fp16", "kind": "gpu"}
    return {"precision": "fp32", "kind": "cpu"}


def write_triton_repo(
    bundle: str | Path, out: str | Path, manifest: dict[str, Any] | None = None, **options: Any
) -> Path:
    """Write one model into a Triton model repository.

    The model folder is assembled beside its final place and renamed into it, so Triton never
    sees half a model; an existing ``out/<name>`` is only replaced with ``overwrite=True``.

    Args:
        bundle: bundle directory.
        out: repository directory (the model goes in ``out/<name>``).
        manifest: the bundle manifest (read from ``bundle`` when None).
        **options: :class:`TritonConfig` fields (``backend``, ``precision``, ``kind``...).

    Returns:
        The model directory ``out/<name>``.
    """
    return write_triton_model(TritonConfig(bundle=str(bundle), out=str(out), **options), manifest)


def write_triton_model(cfg: TritonConfig, manifest: dict[str, Any] | None = None) -> Path:
    """:func:`write_triton_repo` for a built config."""
    from simmim_deploy.core.manifest import read_manifest

    bundle, out = Path(cfg.bundle), Path(cfg.out)
    model_dir = out / cfg.name
    if model_dir.exists() and not cfg.overwrite:
        raise UserError(f"{model_dir} already exists: pass --overwrite to replace it")
    manifest = manifest if manifest is not None else read_manifest(bundle)
    src, io_source = _model_files(Path(bundle), manifest, cfg)
    for path in (src, io_source):
        if not path.is_file():
            raise UserError(f"{path} is listed in the manifest but missing")
    inputs, outputs = onnx_io(io_source)
    text = config_pbtxt(manifest, cfg, inputs, outputs)
    Path(out).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{cfg.name}.", dir=out))
    try:
        (staging / "1").mkdir()
        shutil.copyfile(src, staging / "1" / BACKENDS[cfg.backend][1])
        atomic_write_text(staging / "labels.txt", "\n".join(manifest["class_names"]) + "\n")
        atomic_write_text(staging / "config.pbtxt", text)
        staging.chmod(0o755)
        if model_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{cfg.name}.old.", dir=out))
            model_dir.rename(old / cfg.name)
            staging.rename(model_dir)
            shutil.rmtree(old)
        else:
            staging.rename(model_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return model_dir
