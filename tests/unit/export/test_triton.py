"""Every Triton config the tool writes parses into Triton's own ``ModelConfig`` protobuf and
passes the rules Triton applies when it loads a model; repository options and refusals.

The load rules are written here from Triton's model configuration guide, independently of the
generator: non-empty ``dims`` with positive or -1 entries, a ``reshape`` whose element count
equals ``dims``' and whose shape is the model's, names and data types equal to the ONNX file's
I/O (read through ONNX Runtime, not through the generator's reader), preferred batch sizes
within ``max_batch_size``, the default model file and the label file present.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from simmim_deploy.core.errors import UserError
from simmim_deploy.core.manifest import read_manifest, write_manifest
from simmim_deploy.export.facts import artefact_entry
from simmim_deploy.export.fp16 import convert_fp16
from simmim_deploy.export.quantize import quantize_static_int8
from simmim_deploy.export.triton import bundle_repo_options, write_triton_repo
from tests.unit.serve.conftest import build_cls_bundle, build_det_bundle

ORT_TO_TRITON = {
    "tensor(float)": mc.TYPE_FP32,
    "tensor(float16)": mc.TYPE_FP16,
    "tensor(int64)": mc.TYPE_INT64,
    "tensor(int32)": mc.TYPE_INT32,
}
PRECISIONS = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory, digits_batch) -> dict[str, Path]:
    """A classifier and a detector bundle, each with FP32, FP16 and INT8 (Q/DQ) ONNX files and
    one engine entry per precision (placeholder bytes: only its config is tested here)."""
    out = {}
    for task, build in (("classification", build_cls_bundle), ("detection", build_det_bundle)):
        path = build(tmp_path_factory.mktemp(f"{task} bundle"))
        manifest = read_manifest(path)
        convert_fp16(path / "model.onnx", path / PRECISIONS["fp16"])
        quantize_static_int8(path / "model.onnx", path / PRECISIONS["int8"], digits_batch)
        for precision, file in PRECISIONS.items():
            manifest["artefacts"][precision] = artefact_entry(path / file, precision, {})
            engine = f"model.{precision}.sm90.trt10.8.b1-8-32.engine"
            (path / engine).write_bytes(b"placeholder, not a TensorRT plan")
            manifest["engines"].append({"file": engine, "onnx": file, "precision": precision})
        write_manifest(path, manifest)
        out[task] = path
    return out


def check_load_rules(config: mc.ModelConfig, model_dir: Path, onnx_file: Path) -> None:
    """Assert what Triton checks when it loads ``model_dir`` (see the module docstring)."""
    assert config.name == model_dir.name
    model_file = {"onnxruntime_onnx": "model.onnx", "tensorrt_plan": "model.plan"}
    assert (model_dir / "1" / model_file[config.platform]).is_file()
    assert config.max_batch_size > 0
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    for tensors, declared in (
        (session.get_inputs(), config.input),
        (session.get_outputs(), config.output),
    ):
        assert [t.name for t in declared] == [t.name for t in tensors]
        for onnx_tensor, entry in zip(tensors, declared, strict=True):
            where = f"{model_dir.name}/{entry.name}"
            assert entry.data_type == ORT_TO_TRITON[onnx_tensor.type], where
            assert len(entry.dims) > 0, f"{where}: Triton refuses empty dims"
            assert all(d == -1 or d > 0 for d in entry.dims), where
            model_shape = list(entry.dims)
            if entry.HasField("reshape"):
                model_shape = list(entry.reshape.shape)
                assert math.prod(entry.dims) == math.prod(model_shape), where
            assert isinstance(onnx_tensor.shape[0], str), f"{where}: batch axis not dynamic"
            onnx_dims = [d if isinstance(d, int) else -1 for d in onnx_tensor.shape[1:]]
            assert model_shape == onnx_dims, where
    for output in config.output:
        if output.label_filename:
            assert (model_dir / output.label_filename).is_file()
    assert all(0 < b <= config.max_batch_size for b in config.dynamic_batching.preferred_batch_size)
    assert config.instance_group and all(g.count >= 1 for g in config.instance_group)
    if config.platform == "tensorrt_plan":
        assert all(g.kind == mc.ModelInstanceGroup.KIND_GPU for g in config.instance_group)


def _config(model_dir: Path) -> mc.ModelConfig:
    # Parse is strict: an unknown field or a wrong type raises.
    return text_format.Parse((model_dir / "config.pbtxt").read_text(), mc.ModelConfig())


@pytest.mark.parametrize("task", ["classification", "detection"])
@pytest.mark.parametrize("backend", ["onnxruntime", "tensorrt"])
@pytest.mark.parametrize("precision", list(PRECISIONS))
def test_every_config_parses_and_loads(bundles, task, backend, precision, tmp_path) -> None:
    bundle = bundles[task]
    model_dir = write_triton_repo(
        bundle, tmp_path / "repo", backend=backend, precision=precision, name="m", instances=2
    )
    config = _config(model_dir)
    check_load_rules(config, model_dir, bundle / PRECISIONS[precision])
    kind = (
        mc.ModelInstanceGroup.KIND_GPU if backend == "tensorrt" else mc.ModelInstanceGroup.KIND_CPU
    )
    assert [(g.count, g.kind) for g in config.instance_group] == [(2, kind)]
    assert config.max_batch_size == 32 and list(config.dynamic_batching.preferred_batch_size) == [
        8,
        32,
    ]
    if task == "detection":
        (num,) = [o for o in config.output if o.name == "num_detections"]
        assert list(num.dims) == [1] and list(num.reshape.shape) == []
        (labels,) = [o for o in config.output if o.name == "labels"]
        assert labels.data_type == mc.TYPE_INT64 and list(labels.dims) == [5]
    else:
        assert config.output[0].label_filename == "labels.txt"
        assert (model_dir / "labels.txt").read_text().split() == ["cat", "dog", "bird"]


def test_kind_instances_overwrite_and_refusals(bundles, tmp_path) -> None:
    bundle, repo = bundles["classification"], tmp_path / "repo"
    first = write_triton_repo(bundle, repo)
    assert _config(first).instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    with pytest.raises(UserError, match="already exists: pass --overwrite"):
        write_triton_repo(bundle, repo)
    write_triton_repo(bundle, repo, name="other")  # a second model beside the first is fine
    gpu = write_triton_repo(bundle, repo, kind="gpu", instances=3, overwrite=True)
    assert [(g.count, g.kind) for g in _config(gpu).instance_group] == [
        (3, mc.ModelInstanceGroup.KIND_GPU)
    ]
    assert sorted(p.name for p in repo.iterdir()) == ["other", "simmim"]  # no staging left
    # export --triton of the GPU profile (fp32 + fp16): the FP16 file on GPU instances.
    gpu_profile = write_triton_repo(
        bundle, repo, name="gpu", **bundle_repo_options(("fp32", "fp16"))
    )
    assert _config(gpu_profile).instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    fp16 = (bundle / PRECISIONS["fp16"]).read_bytes()
    assert (gpu_profile / "1" / "model.onnx").read_bytes() == fp16
    for options, message in (
        ({"kind": "tpu"}, "--kind must be cpu or gpu"),
        ({"backend": "tensorrt", "kind": "cpu"}, "TensorRT engine"),
        ({"backend": "tensorrt", "precision": "int8-dynamic"}, "simmim-deploy build"),
        ({"precision": "bf16"}, "no bf16 ONNX"),
        ({"instances": 0}, "--instances"),
    ):
        with pytest.raises(UserError, match=message):
            write_triton_repo(bundle, tmp_path / "r2", overwrite=True, **options)


def test_cli_refuses_to_overwrite_in_one_line(bundles, tmp_path) -> None:
    cli = [sys.executable, "-m", "simmim_deploy.cli.main", "triton", str(bundles["detection"])]
    repo = str(tmp_path / "repo")
    ok = subprocess.run([*cli, "--out", repo, "--kind", "gpu"], capture_output=True, text=True)
    again = subprocess.run([*cli, "--out", repo], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert again.returncode != 0 and len(again.stderr.strip().splitlines()) == 1
    assert "--overwrite" in again.stderr and "Traceback" not in again.stderr
