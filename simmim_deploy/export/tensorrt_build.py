"""ONNX -> TensorRT engine, built on (and for) the GPU that will run it.

TensorRT 11 removed the FP16/INT8 builder flags: the network is *strongly typed* and precision
comes from the ONNX itself (``model.fp16.onnx`` mixed precision, ``model.int8.onnx`` explicit
Q/DQ). TensorRT 10 (JetPack 6) still uses the flags (explicit Q/DQ INT8 needs only ``INT8``).
Only the batch axis gets an optimization profile. The engine file is written raw, no header, so
Triton, DeepStream and trtexec load it as is; its facts (GPU compute capability, TensorRT
version, precision, profile) live in the file name and the manifest's ``engines`` list. An
engine only runs on the GPU architecture and TensorRT version it was built with: the runtime
(:func:`simmim_deploy.serve.backends.trt.pick_engine`) refuses others and names the rebuild.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from simmim_deploy.core.atomic import atomic_write_bytes
from simmim_deploy.core.config import flag_for, option
from simmim_deploy.core.environment import real_tensorrt
from simmim_deploy.core.errors import UserError

NO_TENSORRT = (
    "TensorRT is not installed (this 'tensorrt' has only type stubs or is missing): "
    "pip install 'simmim-deploy[tensorrt]' on an x86 GPU machine, or use JetPack on Jetson"
)
TIMING_CACHE = "timing.cache"


def require_tensorrt() -> Any:
    """The real TensorRT module, or a one-line :class:`UserError` (stubs are not TensorRT)."""
    trt = real_tensorrt()
    if trt is None:
        raise UserError(NO_TENSORRT)
    return trt


def gpu_compute_capability() -> str:
    """``"8.9"``-style compute capability of GPU 0, or a one-line :class:`UserError`."""
    try:
        import torch
    except ImportError:
        raise UserError("building a TensorRT engine needs a CUDA GPU (torch is missing)") from None
    if not torch.cuda.is_available():
        raise UserError("no CUDA GPU found: TensorRT engines are built on the GPU that runs them")
    major, minor = torch.cuda.get_device_capability(0)
    return f"{major}.{minor}"


def trt_version_short(version: str) -> str:
    """``"10.13.0.35"`` -> ``"10.13"`` (what engine compatibility depends on)."""
    return ".".join(version.split(".")[:2])


def engine_name(precision: str, cc: str, trt_version: str, batch: tuple[int, int, int]) -> str:
    """E.g. ``model.fp16.sm89.trt10.13.b1-8-32.engine``."""
    profile = "-".join(str(b) for b in batch)
    sm, trt = cc.replace(".", ""), trt_version_short(trt_version)
    return f"model.{precision}.sm{sm}.trt{trt}.b{profile}.engine"


@dataclasses.dataclass(frozen=True)
class EngineBuild:
    """One engine build request.

    Attributes:
        onnx_path: the ONNX file (its precision is the graph's).
        out_dir: where the engine and the persistent timing cache go.
        batch: ``(min, opt, max)`` batch profile.
        workspace_gib: builder workspace limit.
        precision: ``fp32`` | ``fp16`` | ``int8`` (names the engine; sets flags on TensorRT 10).
        timing_cache: timing cache file (default ``out_dir/timing.cache``), reused across builds.
    """

    onnx_path: Path
    out_dir: Path
    batch: tuple[int, int, int] = (1, 8, 32)
    workspace_gib: float = 4.0
    precision: str = "fp16"
    timing_cache: Path | None = None


def build_engine(req: EngineBuild) -> dict[str, Any]:
    """Build and write a raw engine file; return its manifest ``engines`` entry.

    Raises:
        UserError: no TensorRT, no GPU, or an ONNX that TensorRT cannot parse.
    """
    require_tensorrt()
    cc = gpu_compute_capability()
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    strongly_typed = major >= 11
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(req.onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise UserError(f"TensorRT cannot parse {req.onnx_path}: {errors[0] if errors else '?'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(req.workspace_gib * (1 << 30)))
    if not strongly_typed:
        # TensorRT 10: precision is a builder choice; explicit Q/DQ only needs INT8.
        if req.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif req.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
    _add_batch_profile(builder, network, config, req.batch)
    cache_path = req.timing_cache or req.out_dir / TIMING_CACHE
    blob = cache_path.read_bytes() if cache_path.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(blob), False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError(f"TensorRT failed to build an engine from {req.onnx_path} (see its log)")
    atomic_write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
    name = engine_name(req.precision, cc, trt.__version__, req.batch)
    path = req.out_dir / name
    atomic_write_bytes(path, bytes(serialized))  # raw: no header in front of the plan
    from simmim_deploy.core.manifest import sha256_file

    return {
        "file": name,
        "onnx": req.onnx_path.name,
        "compute_capability": cc,
        "tensorrt_version": trt_version_short(trt.__version__),
        "precision": req.precision,
        "strongly_typed": strongly_typed,
        "batch": list(req.batch),
        "workspace_gib": req.workspace_gib,
        "sha256": sha256_file(path),
    }


def _add_batch_profile(
    builder: Any, network: Any, config: Any, batch: tuple[int, int, int]
) -> None:
    import tensorrt as trt

    profile: trt.IOptimizationProfile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        chw = tuple(tensor.shape)[1:]
        lo, opt, hi = ((b, *chw) for b in batch)
        profile.set_shape(tensor.name, trt.Dims(list(lo)), trt.Dims(list(opt)), trt.Dims(list(hi)))
    config.add_optimization_profile(profile)


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """Options of ``simmim-deploy build`` (each field's help is its ``--help`` line)."""

    source: str = option(help="Bundle directory or a model.onnx file.", positional=True)
    batch: str | tuple[int, ...] | None = option(
        None, "Profile MIN:OPT:MAX (default: the bundle's, or 1:8:32 for a bare ONNX)."
    )
    workspace_gib: float = option(4.0, "Builder workspace limit in GiB.", flag="--workspace")
    precision: str | None = option(
        None, "fp32, fp16 or int8 (default: every static-precision ONNX in the bundle)."
    )

    def __post_init__(self) -> None:
        if not Path(self.source).exists():
            raise UserError(f"not found: {self.source} (give a bundle directory or a model.onnx)")
        if self.precision not in (None, "fp32", "fp16", "int8"):
            raise UserError(f"--precision must be fp32, fp16 or int8, got {self.precision!r}")
        if self.workspace_gib <= 0:
            raise UserError(f"{flag_for(self, 'workspace_gib')} must be positive (GiB)")


def _jobs(cfg: BuildConfig) -> tuple[list[tuple[Path, str]], dict[str, Any] | None]:
    """``[(onnx, precision)]`` to build and the bundle manifest (None for a bare ONNX)."""
    from simmim_deploy.core.manifest import read_manifest

    src = Path(cfg.source)
    if src.is_file():
        return [(src, cfg.precision or "fp32")], None
    manifest = read_manifest(src)
    arts = {p: a for p, a in manifest["artefacts"].items() if p in ("fp32", "fp16", "int8")}
    wanted = [cfg.precision] if cfg.precision else list(arts)
    missing = [p for p in wanted if p not in arts and p != "fp16"]
    if missing:
        raise UserError(
            f"the bundle has no {missing[0]} ONNX: re-export with --precision {missing[0]}"
        )
    # FP16 without model.fp16.onnx: TensorRT 10 can still build FP16 from the FP32 graph (flag).
    return [(src / arts.get(p, arts["fp32"])["file"], p) for p in wanted], manifest


def build_engines(cfg: BuildConfig) -> list[dict[str, Any]]:
    """Build the engines ``cfg`` asks for; record them in the bundle manifest when there is one.

    Raises:
        UserError: no TensorRT or no GPU (one line), missing artefacts.
    """
    from simmim_deploy.core.manifest import write_manifest
    from simmim_deploy.export.config import parse_batch

    require_tensorrt()
    gpu_compute_capability()
    jobs, manifest = _jobs(cfg)
    default = (1, 8, 32)
    if manifest is not None:
        b = manifest.get("batch", {})
        default = (b.get("min", 1), b.get("opt", 8), b.get("max", 32))
    batch = parse_batch(cfg.batch) if cfg.batch else default
    entries = []
    for onnx_path, precision in jobs:
        req = EngineBuild(onnx_path, onnx_path.parent, batch, cfg.workspace_gib, precision)
        entries.append(build_engine(req))
    if manifest is not None:
        kept = [
            e for e in manifest.get("engines", []) if e["file"] not in {n["file"] for n in entries}
        ]
        manifest["engines"] = kept + entries
        write_manifest(cfg.source, manifest)
    return entries


def real_tensorrt_available() -> bool:
    """True when the real TensorRT library (not only its type stubs) is importable."""
    return real_tensorrt() is not None
