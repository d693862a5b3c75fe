"""INT8: QDQ placement follows the scope; dynamic INT8 runs; calibration warns when small."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest

from simmim_deploy.export.onnx_export import export_onnx, ort_session
from simmim_deploy.export.quantize import quantize_dynamic_int8, quantize_static_int8
from simmim_deploy.models.factory import load_task_checkpoint as load_model

FLOAT_ONLY = {"LayerNormalization", "Softmax", "Add", "Erf", "Div", "Mul"}


@pytest.fixture(scope="module")
def fp32_onnx(vit_digits_ckpt, tmp_path_factory):
    model, _ = load_model(vit_digits_ckpt)
    path = tmp_path_factory.mktemp("q") / "model.onnx"
    return export_onnx(model, 32, ["logits"], path, exporter="torchscript").path


def _dq_consumers(path) -> list[str]:
    """Op types that read a dequantized *activation* (weights' DQ excluded)."""
    model = onnx.load(str(path))
    inits = {i.name for i in model.graph.initializer}
    act_dq = {
        n.output[0]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] not in inits
    }
    return [n.op_type for n in model.graph.node if any(i in act_dq for i in n.input)]


def test_linear_scope_keeps_sensitive_ops_float(fp32_onnx, digits_batch, tmp_path) -> None:
    out = tmp_path / "lin.onnx"
    info = quantize_static_int8(fp32_onnx, out, digits_batch, "minmax", "linear")
    consumers = _dq_consumers(out)
    assert consumers and set(consumers) <= {"MatMul", "Gemm", "Conv"}
    assert {"LayerNormalization", "Softmax", "Add"} <= set(info.float_ops)
    # The attention products (activation x activation MatMuls) stay float too.
    n_linear = sum(
        1 for n in onnx.load(str(fp32_onnx)).graph.node if n.op_type in ("MatMul", "Gemm", "Conv")
    )
    assert consumers.count("MatMul") + consumers.count("Gemm") + consumers.count("Conv") < n_linear


def test_all_scope_quantizes_more(fp32_onnx, digits_batch, tmp_path) -> None:
    lin = quantize_static_int8(fp32_onnx, tmp_path / "l.onnx", digits_batch, "minmax", "linear")
    full = quantize_static_int8(fp32_onnx, tmp_path / "a.onnx", digits_batch, "entropy", "all")
    assert full.num_quantized_nodes > lin.num_quantized_nodes
    assert set(_dq_consumers(tmp_path / "a.onnx")) & FLOAT_ONLY


def test_few_calibration_images_warn(fp32_onnx, digits_batch, tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        info = quantize_static_int8(fp32_onnx, tmp_path / "p.onnx", digits_batch, "percentile")
    assert info.warnings and "calibration images" in caplog.text


def test_dynamic_int8_runs_close(fp32_onnx, digits_batch, tmp_path) -> None:
    info = quantize_dynamic_int8(fp32_onnx, tmp_path / "d.onnx")
    assert "MatMulInteger" in info.quantized_ops
    ref = ort_session(fp32_onnx).run(None, {"images": digits_batch})[0]
    got = ort_session(tmp_path / "d.onnx").run(None, {"images": digits_batch})[0]
    cos = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    assert cos.mean() > 0.99


def test_linear_scope_takes_every_weight_layer_of_a_detector(tmp_path) -> None:
    """Scope linear = the weight layers: a detector's neck/head convolutions as well as its
    Linear layers, never an attention product (MatMul of two activations)."""
    import torch

    from simmim_deploy.export.quantize import linear_scope_nodes
    from simmim_deploy.models.detector import build_detector

    torch.manual_seed(0)
    det = build_detector("vit_nano_patch8_32", num_classes=3, img_size=32).eval()
    names = ["boxes", "scores", "labels", "num_detections"]
    path = export_onnx(det, 32, names, tmp_path / "det.onnx", exporter="torchscript").path
    model = onnx.load(str(path))
    weights = {i.name for i in model.graph.initializer}
    picked = set(linear_scope_nodes(model))
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) > 2, "patch embed plus neck and head convolutions"
    assert {n.name for n in convs if n.input[1] in weights} <= picked
    products = [n for n in model.graph.node if n.op_type == "MatMul" and not set(n.input) & weights]
    assert products and not {n.name for n in products} & picked
    linears = [
        n for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and set(n.input) & weights
    ]
    assert linears and {n.name for n in linears} <= picked
