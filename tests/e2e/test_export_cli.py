"""Export through the CLI: checkpoint -> bundle (fp32 + int8) -> verify; one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

CLI = [sys.executable, "-m", "simmim_deploy.cli.main"]


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A vit_nano classifier in the fine-tuned checkpoint format (random weights, 10 classes)."""
    import simmim_deploy.models  # noqa: F401
    from simmim_deploy.core.checkpoint_meta import CheckpointMeta
    from simmim_deploy.models.classifier import build_classifier_from_meta

    meta = CheckpointMeta(
        task="classification", model_name="vit_nano_patch8_32", img_size=32,
        class_names=tuple(str(i) for i in range(10)),
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
    ).to_dict()  # fmt: skip
    torch.manual_seed(0)
    model = build_classifier_from_meta(meta)
    path = tmp_path_factory.mktemp("e2e ckpt") / "best.pt"
    torch.save({"model": model.state_dict(), "meta": meta}, path)
    return path


def test_export_fp32_int8_then_verify(checkpoint: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "my bundle"
    # Random weights give near-tied logits: agreement budgets would test luck, not the CLI.
    profile = tmp_path / "profile.yaml"
    profile.write_text("thresholds:\n  int8: {min_top1_agreement: 0.0, max_metric_drop: 100}\n")
    res = _run(
        "export", str(checkpoint), "--out", str(bundle), "--precision", "fp32",
        "--precision", "int8", "--calib-data", "builtin:digits", "--calib-images", "64",
        "--eval-data", "builtin:digits", "--exporter", "torchscript", "--config", str(profile),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert list(manifest["artefacts"]) == ["fp32", "int8"]
    assert manifest["calibration"]["num_images"] == 64
    assert manifest["calibration"]["skipped_files"] == 0  # the key every record uses
    assert (bundle / "config.yaml").is_file() and (bundle / "report" / "parity.json").is_file()
    res = _run("verify", str(bundle), "--data", "builtin:digits", "--limit", "16")
    assert res.returncode == 0, res.stderr
    assert "fp32: passed" in res.stdout


def test_target_cpu_then_openvino_verify_and_auto_predict(checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    bundle = tmp_path / "cpu bundle"
    profile = tmp_path / "profile.yaml"  # random weights: near-tied logits (see above)
    loose = "{min_cosine: 0.9, min_top1_agreement: 0.0, max_metric_drop: 100}"
    profile.write_text(
        f"thresholds:\n  int8: {loose}\n  int8-dynamic: {loose}\n  int8-w7: {loose}\n"
        f"  int8-nncf: {loose}\n"
    )
    res = _run(
        "export", str(checkpoint), "--out", str(bundle), "--target", "cpu", "--calib-data",
        "builtin:digits", "--calib-images", "32", "--exporter", "torchscript",
        "--config", str(profile),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    manifest = json.loads((bundle / "manifest.json").read_text())
    arts = manifest["artefacts"]
    assert list(arts) == ["fp32", "int8", "int8-dynamic", "int8-w7", "int8-nncf"]
    assert manifest["artefacts"]["int8-w7"]["quantization"]["weights"].startswith("7-bit")
    import onnx
    from onnx import numpy_helper

    def weight_range(name: str) -> int:
        inits = onnx.load(str(bundle / name)).graph.initializer
        return max(int(abs(numpy_helper.to_array(t).astype(int)).max())
                   for t in inits if t.data_type == onnx.TensorProto.INT8)  # fmt: skip

    assert weight_range("model.int8-w7.onnx") <= 64 < weight_range("model.int8.onnx")
    assert all(a["verified"] for a in manifest["artefacts"].values())
    # The NNCF IR (+ its .bin) is gated on OpenVINO alone: ONNX Runtime cannot read it.
    nncf = arts.pop("int8-nncf")
    assert nncf["file"] == "model.int8-nncf.xml" and (bundle / nncf["weights_file"]).is_file()
    assert nncf["verified_on"] == ["openvino/f32"] or nncf["verified_on"] == ["openvino/bf16"]
    # Gated on OpenVINO too (f32 here: no bf16 instructions; bf16 where the CPU has them).
    for art in arts.values():
        assert art["verified_on"][0] == "onnxruntime"
        assert art["verified_on"][1] in ("openvino/f32", "openvino/bf16")
    parity = json.loads((bundle / "report" / "parity.json").read_text())
    assert parity["artefacts"]["int8"]["openvino"]["passed"]
    res = _run("verify", str(bundle), "--data", "builtin:digits", "--limit", "16",
               "--backend", "openvino")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert (
        "fp32: passed" in res.stdout and "int8: passed" in res.stdout and "openvino" in res.stdout
    )
    assert "int8-nncf: passed" in res.stdout
    res = _run("verify", str(bundle), "--data", "builtin:digits", "--limit", "16")
    assert res.returncode == 0 and "int8-nncf: passed" in res.stdout, res.stderr
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image
    from skimage import data

    Image.fromarray(data.coffee()).save(images / "coffee.jpg")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    cmd = [*CLI, "predict", str(bundle), str(images), "--backend", "auto", "--threads", "1"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    assert "backend auto:" in res.stderr and "measured now" in res.stderr
    for label in ("ort-cpu/fp32", "ort-cpu/int8", "openvino/int8", "openvino/int8-nncf"):
        assert label in res.stderr
    assert "ort-cpu/int8-nncf" not in res.stderr
    assert json.loads(res.stdout.splitlines()[0])["topk"]


def test_target_and_precision_conflict(checkpoint: Path, tmp_path: Path) -> None:
    res = _run("export", str(checkpoint), "--out", str(tmp_path / "b"), "--target", "cpu",
               "--precision", "fp16", "--calib-data", "builtin:digits")  # fmt: skip
    assert res.returncode == 2 and "not both" in res.stderr


def test_missing_checkpoint_is_one_line(tmp_path: Path) -> None:
    res = _run("export", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "b"))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and res.stderr.startswith("error: ")
    assert not (tmp_path / "b").exists()


def test_int8_without_calibration_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    res = _run("export", str(checkpoint), "--out", str(tmp_path / "b"), "--precision", "int8")
    assert res.returncode == 2 and "--calib-data" in res.stderr


def test_build_without_tensorrt_is_one_line(tmp_path: Path) -> None:
    from simmim_deploy.export.tensorrt_build import real_tensorrt_available

    if real_tensorrt_available() and torch.cuda.is_available():
        pytest.skip("TensorRT and a GPU are present")
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"placeholder")
    res = _run("build", str(onnx_file))
    assert res.returncode != 0
    assert res.stderr.strip().count("\n") == 0 and res.stderr.startswith("error: ")


def test_help_has_examples() -> None:
    for cmd in ("export", "build", "verify", "triton"):
        res = _run(cmd, "--help")
        assert res.returncode == 0 and "Example: simmim-deploy" in res.stdout
