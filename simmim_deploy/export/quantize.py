"""INT8 post-training quantization with ONNX Runtime: static QDQ and dynamic.

Static INT8 writes explicit QuantizeLinear/DequantizeLinear pairs (QDQ), so one file serves ONNX
Runtime and TensorRT (which needs symmetric, zero-point-0 activations: hence
``ActivationSymmetric``). Weights are per-channel. Scope ``linear`` quantizes the weight layers
only: Linear layers (MatMul/Gemm with a weight initializer) and convolutions (a ViT's patch
embed; a detector's neck and head): residual adds, LayerNorm, Softmax, GELU and the attention
products stay float, because quantizing them is what destroys ViT accuracy. (The detector's
convolutions joined in issue 11: on OpenVINO they ran in bf16 and took a third of the time, and
NNCF's INT8, the peer, quantizes them; TensorRT's INT8 wants them too. On ONNX Runtime's CPU
kernels an INT8 3x3 convolution this small is slower than the float one; ``--backend auto``
measures and picks.) Scope ``all`` lets ONNX Runtime quantize every op it can (for comparison).
Calibration runs real, eval-preprocessed images through the graph; never noise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx

from simmim_deploy.core.atomic import atomic_path

log = logging.getLogger(__name__)

MIN_CALIB_IMAGES = 300  # below this, activation ranges (esp. percentile/entropy) are noisy
# Data movement and shape ops: neither "quantized" nor "kept float" in a useful sense.
_STRUCTURAL = {
    "Reshape", "Transpose", "Shape", "Gather", "Concat", "Unsqueeze", "Squeeze", "Slice",
    "Constant", "Cast", "Identity", "Expand", "Split", "ConstantOfShape", "Flatten",
    "QuantizeLinear", "DequantizeLinear",
}  # fmt: skip


class _DropPreprocessAdvice(logging.Filter):
    """ONNX Runtime's quantizer logs "Please consider (to run) pre-processing before
    quantization" on the root logger once per call, i.e. several times per export. Its
    pre-processing is shape inference plus constant folding and fusions: our ONNX files are
    already simplified by onnxslim at export (``onnx_export``), and the line asks the user of
    ``export`` for nothing they could do."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Please consider")


@contextlib.contextmanager
def _quiet_advice() -> Iterator[None]:
    root, drop = logging.getLogger(), _DropPreprocessAdvice()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


@dataclasses.dataclass(frozen=True)
class QuantInfo:
    """What a quantization did, for the manifest.

    Attributes:
        mode: ``static`` or ``dynamic``.
        quantized_ops: op types that consume INT8 data.
        float_ops: compute op types that stayed float.
        num_quantized_nodes: nodes with a quantized input.
        warnings: human-readable notes (e.g. few calibration images).
    """

    mode: str
    quantized_ops: list[str]
    float_ops: list[str]
    num_quantized_nodes: int
    warnings: list[str] = dataclasses.field(default_factory=list)


class ArrayCalibrationReader:
    """ONNX Runtime ``CalibrationDataReader`` over a preprocessed image batch.

    Args:
        images: float32 ``(N, 3, S, S)`` eval-preprocessed real images.
        input_name: the graph input's name.
        batch_size: images per calibration step.
        on_batch: called with ``(batches fed, total batches)`` (progress display).
    """

    def __init__(
        self,
        images: np.ndarray,
        input_name: str,
        batch_size: int = 16,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self.images, self.input_name, self.batch_size = images, input_name, batch_size
        self._it: Iterator[dict[str, np.ndarray]] | None = None
        self._range = (0, len(self))
        self.on_batch, self._fed = on_batch, 0

    def __len__(self) -> int:
        """Number of batches (the unit of ``set_range``)."""
        return -(-len(self.images) // self.batch_size)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Restrict the next pass to batches ``[start_index, end_index)``."""
        self._range = (start_index, min(end_index, len(self)))
        self._it = None

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for b in range(*self._range):
            chunk = self.images[b * self.batch_size : (b + 1) * self.batch_size]
            self._fed += 1
            if self.on_batch is not None:
                self.on_batch(min(self._fed, len(self)), len(self))
            yield {self.input_name: np.ascontiguousarray(chunk)}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = self._batches()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None


def linear_scope_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes scope ``linear`` quantizes: the weight layers, i.e. MatMul/Gemm with a
    weight initializer (Linear layers) and Conv with a weight initializer (a ViT's patch embed;
    a detector's neck and head convolutions). Not the attention products (two activations)."""
    weights = {init.name for init in model.graph.initializer}
    picked = []
    for node in model.graph.node:
        linear = node.op_type in ("MatMul", "Gemm") and any(i in weights for i in node.input[:2])
        conv = node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in weights
        if linear or conv:
            picked.append(node.name)
    return picked


def _ensure_node_names(model: onnx.ModelProto) -> None:
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"


def quantize_static_int8(
    src: str | Path,
    dst: str | Path,
    calib_images: np.ndarray,
    method: str = "minmax",
    scope: str = "linear",
    per_channel: bool = True,
    on_batch: Callable[[int, int], None] | None = None,
    reduce_range: bool = False,
) -> QuantInfo:
    """Static QDQ INT8 quantization calibrated on real images.

    Args:
        src: FP32 ONNX file.
        dst: INT8 QDQ ONNX file to write (atomically).
        calib_images: float32 ``(N, 3, S, S)`` eval-preprocessed real images.
        method: ``minmax``, ``entropy`` or ``percentile`` activation ranges.
        scope: ``linear`` (the weight layers: Linear and Conv) or ``all``.
        per_channel: per-output-channel weight scales.
        on_batch: calibration progress, ``(batches fed, total batches)``.
        reduce_range: 7-bit weights (ONNX Runtime's ``reduce_range``): on CPUs without VNNI the
            8-bit dot products of OpenVINO's kernels saturate with full-range weights.

    Returns:
        :class:`QuantInfo` with the ops that stayed float.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    notes = []
    if len(calib_images) < MIN_CALIB_IMAGES:
        notes.append(
            f"only {len(calib_images)} calibration images (< {MIN_CALIB_IMAGES}): activation "
            "ranges may be noisy; give more with --calib-data"
        )
        log.warning(notes[-1])
    model = onnx.load(str(src))
    _ensure_node_names(model)
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    extra = {
        "ActivationSymmetric": True,  # zero point 0: what TensorRT's explicit INT8 requires
        "WeightSymmetric": True,
        "DedicatedQDQPair": True,  # a float consumer of a quantized tensor keeps its float input
        "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
        "CalibPercentile": 99.999,
        # ONNX Runtime keeps every calibrated tensor of every image in memory before reducing
        # them (tens of GB for ViT-S on 512 images); feeding one batch per pass bounds it.
        # The option is named for MinMax but ORT applies it to every calibrator.
        "CalibStridedMinMax": 1,
    }
    kwargs: dict = {}
    if scope == "linear":
        kwargs = {"op_types_to_quantize": ["MatMul", "Gemm", "Conv"]}
        kwargs["nodes_to_quantize"] = linear_scope_nodes(model)
        # Without this ONNX Runtime also quantizes the outputs, feeding INT8 into GELU/residuals.
        extra["OpTypesToExcludeOutputQuantization"] = ["MatMul", "Gemm", "Conv"]
    reader = ArrayCalibrationReader(calib_images, model.graph.input[0].name, on_batch=on_batch)
    with atomic_path(dst) as tmp, _quiet_advice():
        quantize_static(
            model,
            str(tmp),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[method],
            reduce_range=reduce_range,
            extra_options=extra,
            **kwargs,
        )
    info = describe_quantized(onnx.load(str(dst)), "static")
    return dataclasses.replace(info, warnings=notes)


def quantize_dynamic_int8(src: str | Path, dst: str | Path) -> QuantInfo:
    """Dynamic INT8 (weights INT8 offline, activations quantized per batch at run time).

    The simplest CPU option: no calibration data. Only Linear layers (MatMul with a constant
    weight) are quantized; ONNX Runtime runs them as ``MatMulInteger``/``DynamicQuantizeLinear``.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    _ensure_node_names(model)
    with atomic_path(dst) as tmp, _quiet_advice():
        quantize_dynamic(
            model,
            str(tmp),
            op_types_to_quantize=["MatMul", "Gemm"],
            weight_type=QuantType.QInt8,
            per_channel=False,
            extra_options={"MatMulConstBOnly": True},
        )
    return describe_quantized(onnx.load(str(dst)), "dynamic")


def describe_quantized(model: onnx.ModelProto, mode: str) -> QuantInfo:
    """Which compute ops read INT8 data and which stayed float."""
    dq_out = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    int_ops = {
        "MatMulInteger",
        "ConvInteger",
        "QLinearMatMul",
        "QLinearConv",
        "DynamicQuantizeLinear",
    }
    quantized, floats, count = set(), set(), 0
    for node in model.graph.node:
        if node.op_type in _STRUCTURAL and node.op_type != "DynamicQuantizeLinear":
            continue
        if node.op_type in int_ops or any(i in dq_out for i in node.input):
            quantized.add(node.op_type)
            count += 1
        else:
            floats.add(node.op_type)
    return QuantInfo(mode, sorted(quantized), sorted(floats - quantized), count)
