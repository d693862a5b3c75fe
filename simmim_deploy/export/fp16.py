"""FP32 ONNX -> mixed-precision FP16 ONNX that keeps the numerically sensitive ops in FP32.

LayerNorm, Softmax and reductions see sums over hundreds of channels or tokens: their
intermediate values overflow or lose every significant bit in FP16, so they stay FP32 with
Cast nodes at their boundaries. Everything else (MatMul, Conv, GELU, adds) runs FP16. Inputs
and outputs stay float32 so a caller never sees the difference. The conversion itself is ONNX
Runtime's ``onnxruntime.transformers.float16`` utility (shipped in the onnxruntime wheel).
"""

from __future__ import annotations

from pathlib import Path

import onnx

from simmim_deploy.core.atomic import atomic_path
from simmim_deploy.core.errors import UserError

# Ops computed in FP32 (beyond ONNX Runtime's default block list of ML/NMS ops).
FP32_OPS = (
    "LayerNormalization",
    "Softmax",
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceL2",
    "ReduceLogSumExp",
    "Pow",
    "Sqrt",
    "Exp",
    "Log",
    "CumSum",
    "TopK",
    "NonMaxSuppression",
    "GroupNormalization",
    "InstanceNormalization",
)


def convert_fp16(src: str | Path, dst: str | Path) -> list[str]:
    """Write a mixed-precision copy of the FP32 model ``src`` to ``dst``.

    Args:
        src: FP32 ONNX file.
        dst: FP16 ONNX file to write (atomically); input and output stay float32.

    Returns:
        Sorted op types that stayed FP32 in the graph (for the manifest's ``float_ops``).
    """
    try:
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    except ImportError as exc:
        raise UserError(
            f"this onnxruntime lacks onnxruntime.transformers.float16 ({exc}); "
            "pip install 'onnxruntime>=1.18'"
        ) from None
    model = onnx.load(str(src))
    block = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(FP32_OPS))
    half = convert_float_to_float16(
        model, keep_io_types=True, op_block_list=block, disable_shape_infer=False
    )
    _topological_sort(half.graph)  # the converter appends its boundary Casts at the end
    onnx.checker.check_model(half)
    with atomic_path(dst) as tmp:
        onnx.save(half, str(tmp))
    present = {node.op_type for node in half.graph.node}
    return sorted(present & set(block))


def _topological_sort(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` so every node comes after the producers of its inputs."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise UserError("FP16 conversion produced a graph with a cycle or a dangling input")
        for node in ready:
            available.update(node.output)
        ordered.extend(ready)
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
    del graph.node[:]
    graph.node.extend(ordered)
