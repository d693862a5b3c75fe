"""Triton config text for the ONNX Runtime and TensorRT backends."""

from __future__ import annotations

import pytest

from simmim_deploy.core.errors import UserError
from simmim_deploy.export.triton import TritonConfig, config_pbtxt, write_triton_repo

MANIFEST = {
    "task": "classification",
    "class_names": ["cat", "dog"],
    "input": {"name": "images", "shape": ["batch", 3, 224, 224], "dtype": "float32"},
    "outputs": [{"name": "logits", "shape": ["batch", 2], "dtype": "float32"}],
    "batch": {"min": 1, "opt": 8, "max": 32},
    "artefacts": {"fp32": {"file": "model.onnx"}},
    "engines": [],
}


def test_onnxruntime_config_text() -> None:
    text = config_pbtxt(MANIFEST, TritonConfig(bundle="b", out="r"))
    assert 'platform: "onnxruntime_onnx"' in text and "max_batch_size: 32" in text
    assert "dims: [ 3, 224, 224 ]" in text and "dims: [ 2 ]" in text
    assert (
        "preferred_batch_size: [ 8, 32 ]" in text and "max_queue_delay_microseconds: 2000" in text
    )
    assert "kind: KIND_CPU" in text and 'label_filename: "labels.txt"' in text


def test_tensorrt_config_and_repo(spaced_tmp) -> None:
    text = config_pbtxt(MANIFEST, TritonConfig(bundle="b", out="r", backend="tensorrt"))
    assert 'platform: "tensorrt_plan"' in text and "kind: KIND_GPU" in text
    (spaced_tmp / "model.onnx").write_bytes(b"onnx")
    model_dir = write_triton_repo(spaced_tmp, spaced_tmp / "repo", manifest=MANIFEST)
    assert (model_dir / "1" / "model.onnx").read_bytes() == b"onnx"
    assert (model_dir / "labels.txt").read_text().split() == ["cat", "dog"]
    with pytest.raises(UserError, match="simmim-deploy build"):
        write_triton_repo(spaced_tmp, spaced_tmp / "r2", manifest=MANIFEST, backend="tensorrt")
