"""Native TensorRT runner vs ONNX Runtime (runs where CUDA and TensorRT exist, else skipped)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simmim_deploy.serve.backends import run_any_batch
from simmim_deploy.serve.predict import expand_sources
from simmim_deploy.serve.runtime import Runtime


def _build_engine(onnx_path: Path, out: Path, batch: tuple[int, int, int], hw: int) -> None:
    from simmim_deploy.serve.backends.trt import load_tensorrt

    trt = load_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10+
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(onnx_path.read_bytes()), parser.get_error(0)
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("images", *[(b, 3, hw, hw) for b in batch])
    config.add_optimization_profile(profile)
    out.write_bytes(bytes(builder.build_serialized_network(network, config)))


@pytest.mark.gpu
def test_trt_engine_matches_onnxruntime(cls_bundle: Path, image_dir: Path, tmp_path: Path) -> None:
    from simmim_deploy.core.environment import real_tensorrt
    from simmim_deploy.serve.backends.trt import TrtBackend

    if real_tensorrt() is None:
        pytest.skip(
            "gpu marker: needs the tensorrt library (pip install 'simmim-deploy[tensorrt]')"
        )
    engine = tmp_path / "model.engine"
    _build_engine(cls_bundle / "model.onnx", engine, (1, 4, 8), 32)
    ort_rt = Runtime(cls_bundle, "ort-cpu")
    x = np.stack([ort_rt.prepare(p).array for p in expand_sources([str(image_dir)])] * 3)  # 15
    ref = ort_rt.infer(x)["logits"]
    backend = TrtBackend(engine, "fp32")
    try:
        assert backend.input_shape == (None, 3, 32, 32) and backend.max_batch == 8
        np.testing.assert_allclose(backend.run(x[:5])["logits"], ref[:5], atol=2e-3)  # partial
        # 15 images on a max-8 profile: split into 8 + 7 without rebuilding anything
        np.testing.assert_allclose(run_any_batch(backend, x)["logits"], ref, atol=2e-3)
        assert backend.describe()["backend"] == "tensorrt"
    finally:
        backend.close()
