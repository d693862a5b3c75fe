"""``--backend auto`` on a CPU: measured once, cached per machine and bundle, deterministic."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from simmim_deploy.core.manifest import read_manifest, write_manifest
from simmim_deploy.serve.backends import open_backend
from simmim_deploy.serve.backends.auto import cache_dir, cache_key, candidates, choose

pytest.importorskip("openvino", reason="the openvino extra is not installed")


@pytest.fixture(scope="module")
def ov_bundle(cls_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The classification bundle with its FP32 file gated on OpenVINO too, as export records it
    (test_openvino_backend.py shows OpenVINO's FP32 outputs equal ONNX Runtime's)."""
    from simmim_deploy.serve.backends.openvino import default_inference_precision, runtime_key

    bundle = tmp_path_factory.mktemp("ov bundle")
    shutil.copytree(cls_bundle, bundle, dirs_exist_ok=True)
    manifest = read_manifest(bundle)
    ov = runtime_key(default_inference_precision())
    manifest["artefacts"]["fp32"]["verified_on"] = ["onnxruntime", ov]
    write_manifest(bundle, manifest)
    return bundle


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return cache_dir()


def _write_timings(manifest: dict, timings: dict[str, float]) -> Path:
    labels = candidates(manifest)
    path = cache_dir() / f"{cache_key(manifest, labels, None, manifest['batch']['opt'])}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images_per_s": timings}))
    return path


def test_choice_is_a_pure_function_of_the_timings() -> None:
    timings = {"ort-cpu/fp32": 10.0, "openvino/int8": 31.5, "ort-cpu/int8": 31.5}
    assert choose(timings) == "openvino/int8"  # tie at the top: alphabetical, every time
    assert choose(dict(reversed(list(timings.items())))) == "openvino/int8"
    assert choose({"ort-cpu/fp32": 10.0, "openvino/fp32": 9.9}) == "ort-cpu/fp32"


def test_cached_timings_decide_without_measuring(ov_bundle: Path, private_cache: Path) -> None:
    manifest = read_manifest(ov_bundle)
    path = _write_timings(manifest, {"ort-cpu/fp32": 50.0, "openvino/fp32": 20.0})
    backend = open_backend(ov_bundle, manifest, "auto")
    assert backend.describe()["backend"] == "onnxruntime"
    assert "cached" in backend.describe()["notes"][-1]
    path = _write_timings(manifest, {"ort-cpu/fp32": 20.0, "openvino/fp32": 50.0})
    for _ in range(2):  # same timings, same choice
        backend = open_backend(ov_bundle, manifest, "auto")
        assert backend.describe()["backend"] == "openvino"
    assert json.loads(path.read_text()) == {"images_per_s": {"ort-cpu/fp32": 20.0,
                                                             "openvino/fp32": 50.0}}  # fmt: skip


def test_first_use_measures_every_candidate_then_reuses(
    ov_bundle: Path, private_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = read_manifest(ov_bundle)
    first = open_backend(ov_bundle, manifest, "auto", threads=1)
    line = capsys.readouterr().err
    assert "backend auto:" in line and "measured now" in line and "batch 8" in line
    files = list(private_cache.glob("*.json"))
    assert len(files) == 1
    record = json.loads(files[0].read_text())
    assert set(record["images_per_s"]) == {"ort-cpu/fp32", "openvino/fp32"}
    assert all(v > 0 for v in record["images_per_s"].values())
    assert record["cpu"]["model"]
    second = open_backend(ov_bundle, manifest, "auto", threads=1)
    assert "cached in" in capsys.readouterr().err
    assert first.describe()["backend"] == second.describe()["backend"]
    # Another thread count is another measurement (the timings depend on it).
    open_backend(ov_bundle, manifest, "auto", threads=2)
    assert len(list(private_cache.glob("*.json"))) == 2


def test_only_verified_pairs_are_candidates(
    ov_bundle: Path, tmp_path: Path, private_cache: Path
) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(ov_bundle, bundle)
    manifest = read_manifest(bundle)
    shutil.copy(bundle / "model.onnx", bundle / "model.int8.onnx")
    unverified = copy.deepcopy(manifest["artefacts"]["fp32"])
    manifest["artefacts"]["int8"] = {**unverified, "file": "model.int8.onnx",
                                     "precision": "int8", "verified": False}  # fmt: skip
    write_manifest(bundle, manifest)
    assert candidates(manifest) == ["ort-cpu/fp32", "openvino/fp32"]
    # Gated on ONNX Runtime only (or written before verified_on existed): no OpenVINO pair.
    manifest["artefacts"]["fp32"]["verified_on"] = ["onnxruntime"]
    assert candidates(manifest) == ["ort-cpu/fp32"]
    del manifest["artefacts"]["fp32"]["verified_on"]
    assert candidates(manifest) == ["ort-cpu/fp32"]
    only = open_backend(bundle, manifest, "auto")  # one candidate: opened without measuring
    assert "only verified" in only.describe()["notes"][-1]
    assert not list(private_cache.glob("*.json"))
    manifest = read_manifest(bundle)
    from simmim_deploy.core.errors import UserError

    with pytest.raises(UserError, match="no verified 'int8'"):
        open_backend(bundle, manifest, "auto", precision="int8")
    # A cache naming an artefact that is not a candidate is ignored, not trusted.
    _write_timings(manifest, {"ort-cpu/int8": 1e9})
    assert open_backend(bundle, manifest, "auto").describe()["precision"] == "fp32"
