"""FP16: sensitive ops stay FP32, I/O stays float32, outputs close to FP32."""

from __future__ import annotations

import numpy as np
import onnx

from simmim_deploy.export.fp16 import convert_fp16
from simmim_deploy.export.onnx_export import export_onnx, ort_session
from simmim_deploy.models.factory import load_task_checkpoint as load_model


def test_fp16_mixed_precision(vit_digits_ckpt, digits_batch, tmp_path) -> None:
    model, _ = load_model(vit_digits_ckpt)
    src = export_onnx(model, 32, ["logits"], tmp_path / "m.onnx", exporter="torchscript").path
    kept = convert_fp16(src, tmp_path / "m16.onnx")
    assert {"LayerNormalization", "Softmax"} <= set(kept)
    half = onnx.load(str(tmp_path / "m16.onnx"))
    types = {t.name: t.type.tensor_type.elem_type for t in half.graph.value_info}
    fp32 = onnx.TensorProto.FLOAT
    assert half.graph.input[0].type.tensor_type.elem_type == fp32
    assert half.graph.output[0].type.tensor_type.elem_type == fp32
    for node in half.graph.node:
        if node.op_type in ("LayerNormalization", "Softmax"):
            assert types.get(node.output[0], fp32) == fp32, node.name
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in half.graph.initializer)
    ref = ort_session(src).run(None, {"images": digits_batch})[0]
    got = ort_session(tmp_path / "m16.onnx").run(None, {"images": digits_batch})[0]
    cos = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    assert cos.min() >= 0.999
