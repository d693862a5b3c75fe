"""The OpenVINO backend against ONNX Runtime on real images: FP32 tight, Q/DQ INT8 within the
export gate's budget; classifier and detector bundles."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simmim_deploy.core.manifest import read_manifest, write_manifest
from simmim_deploy.export.config import DEFAULT_THRESHOLDS
from simmim_deploy.export.facts import artefact_entry
from simmim_deploy.export.quantize import quantize_static_int8
from simmim_deploy.export.verify import check_thresholds, compare_classification
from simmim_deploy.serve.backends import open_backend
from simmim_deploy.serve.backends.openvino import OpenVinoBackend
from simmim_deploy.serve.preprocess import PreprocessSpec, preprocess

from .conftest import real_photos

pytest.importorskip("openvino", reason="the openvino extra is not installed")


def real_batch(manifest: dict, count: int, seed: int = 0) -> np.ndarray:
    """``count`` random crops of real photographs, preprocessed as the bundle says."""
    spec = PreprocessSpec.from_manifest(manifest)
    rng = np.random.default_rng(seed)
    photos = real_photos()
    out = []
    for i in range(count):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        side = int(rng.integers(min(h, w) // 4, min(h, w)))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(photo[top : top + side, left : left + side])
        out.append(preprocess(crop, spec)[0])
    return np.stack(out)


@pytest.fixture(scope="module")
def int8_bundle(cls_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The classification bundle plus a static Q/DQ INT8 file calibrated on real photo crops."""
    bundle = tmp_path_factory.mktemp("int8 bundle")
    shutil.copytree(cls_bundle, bundle, dirs_exist_ok=True)
    manifest = read_manifest(bundle)
    calib = real_batch(manifest, 48, seed=1)
    quantize_static_int8(
        bundle / "model.onnx", bundle / "model.int8.onnx", calib, "minmax", "linear"
    )
    manifest["artefacts"]["int8"] = artefact_entry(bundle / "model.int8.onnx", "int8", {})
    write_manifest(bundle, manifest)
    return bundle


def test_fp32_classifier_equals_onnx_runtime(cls_bundle: Path) -> None:
    manifest = read_manifest(cls_bundle)
    x = real_batch(manifest, 12)
    ort = open_backend(cls_bundle, manifest, "ort-cpu", "fp32", threads=1)
    ref = ort.run(x)["logits"]
    # FP32 tight: OpenVINO held to f32 inference (its default is bf16 on bf16 hardware).
    f32 = OpenVinoBackend(cls_bundle / "model.onnx", threads=1, inference_precision="f32")
    got = f32.run(x)["logits"]
    assert got.shape == ref.shape == (12, 3) and got.dtype == np.float32
    assert np.abs(got - ref).max() < 1e-4 * max(1.0, float(np.abs(ref).max()))
    assert f32.describe()["inference_precision"] == "f32"
    ov = open_backend(cls_bundle, manifest, "openvino", "fp32", threads=1)
    info = ov.describe()
    assert info["backend"] == "openvino" and info["precision"] == "fp32"
    assert info["performance_hint"] == "LATENCY"
    # Without bf16 instructions OpenVINO infers FP32 in f32; with them, bf16 (reported either way).
    bf16 = "BF16" in info["optimization_capabilities"]
    assert info["inference_precision"] == ("bf16" if bf16 else "f32")
    # The default (bf16 where the CPU has it) stays within the reduced-precision (FP16) budget.
    fails = check_thresholds(
        compare_classification(ref, ov.run(x)["logits"]),
        DEFAULT_THRESHOLDS["fp16"],
        "classification",
    )
    assert not fails, f"OpenVINO default ({info['inference_precision']}): {fails}"


def test_any_batch_size_and_the_runtime_path(cls_bundle: Path, image_dir: Path) -> None:
    from simmim_deploy.serve.predict import predict

    manifest = read_manifest(cls_bundle)
    ov = open_backend(cls_bundle, manifest, "openvino", threads=1)
    for n in (1, 5):
        assert ov.run(real_batch(manifest, n))["logits"].shape == (n, 3)
    by_ov = predict(cls_bundle, [str(image_dir)], batch_size=2, backend="openvino", threads=1)
    by_ort = predict(cls_bundle, [str(image_dir)], batch_size=2, backend="ort-cpu", threads=1)
    assert by_ov["ok"] == by_ort["ok"] == 5
    assert by_ov["runtime"]["backend"]["backend"] == "openvino"
    bf16 = by_ov["runtime"]["backend"]["inference_precision"] == "bf16"
    for a, b in zip(by_ov["results"], by_ort["results"], strict=True):
        assert a["topk"][0]["label"] == b["topk"][0]["label"]
        tol = 2e-2 if bf16 else 1e-4  # bf16 keeps ~3 significant digits
        assert a["topk"][0]["score"] == pytest.approx(b["topk"][0]["score"], abs=tol)


def test_int8_qdq_file_within_the_gate(int8_bundle: Path) -> None:
    manifest = read_manifest(int8_bundle)
    x = real_batch(manifest, 32, seed=2)
    fp32 = open_backend(int8_bundle, manifest, "ort-cpu", "fp32", threads=1).run(x)["logits"]
    ort8 = open_backend(int8_bundle, manifest, "ort-cpu", "int8", threads=1).run(x)["logits"]
    ov8 = open_backend(int8_bundle, manifest, "openvino", "int8", threads=1)
    got = ov8.run(x)["logits"]
    assert ov8.describe()["precision"] == "int8"
    budget = DEFAULT_THRESHOLDS["int8"]
    for name, out in (("onnxruntime", ort8), ("openvino", got)):
        fails = check_thresholds(compare_classification(fp32, out), budget, "classification")
        assert not fails, f"{name} INT8: {fails}"
    # OpenVINO really ran the integer graph: its outputs are not the FP32 ones.
    assert np.abs(got - fp32).max() > 1e-6


def test_detector_outputs_equal_onnx_runtime(det_bundle: Path) -> None:
    manifest = read_manifest(det_bundle)
    x = real_batch(manifest, 3)
    ov = open_backend(det_bundle, manifest, "openvino", threads=1).run(x)
    ort = open_backend(det_bundle, manifest, "ort-cpu", threads=1).run(x)
    assert set(ov) == set(ort) == {"boxes", "scores", "labels", "num_detections"}
    for name in ort:
        assert ov[name].shape == ort[name].shape, name
        np.testing.assert_allclose(ov[name], ort[name], atol=1e-5, err_msg=name)
    assert ov["labels"].dtype.kind == "i" and ov["num_detections"].dtype.kind == "i"


def test_uncompilable_file_is_one_line_error(tmp_path: Path, cls_bundle: Path) -> None:
    from simmim_deploy.core.errors import UserError

    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(UserError, match="OpenVINO cannot"):
        OpenVinoBackend(bad)
    with pytest.raises(UserError, match="performance hint"):
        OpenVinoBackend(cls_bundle / "model.onnx", hint="FASTEST")


def test_missing_openvino_names_the_extra(cls_bundle: Path, monkeypatch) -> None:
    from simmim_deploy.core.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(MissingExtraError, match=r"simmim-deploy\[openvino\]"):
        open_backend(cls_bundle, read_manifest(cls_bundle), "openvino")


def test_benchmark_runs_openvino_on_every_onnx_artefact(int8_bundle: Path, tmp_path: Path) -> None:
    from simmim_deploy.serve.bench import run_benchmark

    report = run_benchmark(int8_bundle, ["openvino"], [2], 0.05, out_dir=tmp_path, threads=1)
    got = {(r["backend"], r["precision"]) for r in report["results"]}
    assert got == {("openvino", "fp32"), ("openvino", "int8")}
    assert all(r["describe"]["backend"] == "openvino" for r in report["results"])
    env = report["environment"]
    assert env["openvino"] and env["isa"] and set(env["cpu_flags"]) >= {"avx2", "amx_int8"}


def test_bf16_inference_within_the_reduced_precision_budget(cls_bundle: Path) -> None:
    """What OpenVINO does by default on AMX-BF16/AVX512-BF16 CPUs, forced here (OpenVINO
    emulates bf16 where the CPU lacks it): outputs within the FP16 budget's cosine, not equal."""
    manifest = read_manifest(cls_bundle)
    x = real_batch(manifest, 16, seed=3)
    ref = open_backend(cls_bundle, manifest, "ort-cpu", threads=1).run(x)["logits"]
    path = cls_bundle / manifest["artefacts"]["fp32"]["file"]
    bf16 = OpenVinoBackend(path, threads=1, inference_precision="bf16")
    got = bf16.run(x)["logits"]
    assert bf16.describe()["inference_precision"] == "bf16"
    metrics = compare_classification(ref, got)
    assert metrics["cosine_min"] >= DEFAULT_THRESHOLDS["fp16"].min_cosine, metrics
    assert metrics["max_abs"] > 0  # really reduced precision, not f32 under another name


@pytest.fixture(scope="module")
def nncf_bundle(cls_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The classification bundle plus the NNCF INT8 IR, as ``export --target cpu`` writes it
    (quantizer and manifest entry from the export code; calibrated on real photo crops)."""
    pytest.importorskip("nncf", reason="the openvino extra (nncf) is not installed")
    from simmim_deploy.export.converters import CONVERTERS, FILENAMES, ConvertContext

    bundle = tmp_path_factory.mktemp("nncf bundle")
    shutil.copytree(cls_bundle, bundle, dirs_exist_ok=True)
    manifest = read_manifest(bundle)
    path = bundle / FILENAMES["int8-nncf"]
    ctx = ConvertContext(real_batch(manifest, 32, seed=1))
    details = CONVERTERS["int8-nncf"](bundle / "model.onnx", path, ctx)
    from simmim_deploy.serve.backends.openvino import default_inference_precision, runtime_key

    details["verified_on"] = [runtime_key(default_inference_precision())]  # as export records
    manifest["artefacts"]["int8-nncf"] = artefact_entry(path, "int8-nncf", details)
    write_manifest(bundle, manifest)
    return bundle


def test_nncf_ir_runs_on_openvino_within_the_gate(nncf_bundle: Path) -> None:
    from simmim_deploy.core.errors import UserError

    manifest = read_manifest(nncf_bundle)
    art = manifest["artefacts"]["int8-nncf"]
    assert art["file"].endswith(".xml") and (nncf_bundle / art["weights_file"]).is_file()
    assert not list(nncf_bundle.glob(".nncf-*"))  # the staging folder is gone
    x = real_batch(manifest, 32, seed=2)
    fp32 = open_backend(nncf_bundle, manifest, "ort-cpu", "fp32", threads=1).run(x)["logits"]
    ov = open_backend(nncf_bundle, manifest, "openvino", "int8-nncf", threads=1)
    got = ov.run(x)["logits"]
    assert ov.describe()["precision"] == "int8-nncf" and ov.describe()["file"] == art["file"]
    fails = check_thresholds(compare_classification(fp32, got), DEFAULT_THRESHOLDS["int8-nncf"],
                             "classification")  # fmt: skip
    assert not fails, fails
    assert np.abs(got - fp32).max() > 1e-6  # the integer graph ran, not the FP32 one
    with pytest.raises(UserError, match="OpenVINO IR"):  # ONNX Runtime cannot read an IR
        open_backend(nncf_bundle, manifest, "ort-cpu", "int8-nncf")


def test_auto_offers_the_ir_to_openvino_only(nncf_bundle: Path) -> None:
    from simmim_deploy.serve.backends.auto import candidates

    labels = candidates(read_manifest(nncf_bundle))
    assert "openvino/int8-nncf" in labels and "ort-cpu/int8-nncf" not in labels
    assert "ort-cpu/fp32" in labels


def test_throughput_streams_run_calls_at_once_and_predict_keeps_order(
    cls_bundle: Path, image_dir: Path, tmp_path: Path
) -> None:
    """Offline predict opens OpenVINO with its THROUGHPUT hint (one infer request per stream) and
    keeps that many batches in flight: concurrent calls give the sequential outputs, and the
    records come out in input order, equal to one-at-a-time ONNX Runtime's."""
    from concurrent.futures import ThreadPoolExecutor

    from simmim_deploy.serve.predict import predict

    manifest = read_manifest(cls_bundle)
    tp = open_backend(cls_bundle, manifest, "openvino", threads=2, throughput=True)
    assert tp.describe()["performance_hint"] == "THROUGHPUT" and tp.parallel >= 1
    batches = [real_batch(manifest, n) for n in (1, 2, 3, 4, 5, 6)]
    alone = [tp.run(b)["logits"] for b in batches]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda b: tp.run(b)["logits"], batches))
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_array_equal(a, b)
    latency = open_backend(cls_bundle, manifest, "openvino", threads=2)
    assert latency.parallel == 1 and latency.describe()["performance_hint"] == "LATENCY"
    many = tmp_path / "many.txt"  # 15 images, batch 2: 8 batches, in flight by twos
    many.write_text("\n".join(sorted(str(p) for p in image_dir.rglob("*.*")) * 3) + "\n")
    by_ov = predict(cls_bundle, [str(many)], batch_size=2, backend="openvino", threads=2)
    by_ort = predict(cls_bundle, [str(many)], batch_size=2, backend="ort-cpu", threads=1)
    assert by_ov["runtime"]["backend"]["performance_hint"] == "THROUGHPUT"
    assert by_ov["inflight_batches"] == tp.parallel and by_ort["inflight_batches"] == 1
    assert [r["path"] for r in by_ov["results"]] == [r["path"] for r in by_ort["results"]]
    for a, b in zip(by_ov["results"], by_ort["results"], strict=True):
        assert a["topk"][0]["label"] == b["topk"][0]["label"]
