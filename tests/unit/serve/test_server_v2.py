"""Open Inference Protocol v2 against a real server, spoken by an independent client.

The client is ``tritonclient.http`` (NVIDIA's own client for Triton/KServe); outputs are checked
against ONNX Runtime run directly on the same tensor.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from simmim_deploy.core.errors import UserError
from simmim_deploy.serve.predict import expand_sources
from simmim_deploy.serve.runtime import Runtime
from simmim_deploy.serve.server import create_app
from tests.unit.serve.test_server import LiveServer, scrape

ORT_TYPES = {"tensor(float)": "FP32", "tensor(int64)": "INT64"}


def _ort(bundle: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])


def _real_batch(bundle: Path, image_dir: Path) -> tuple[list[bytes], np.ndarray]:
    """Encoded real photos and the preprocessed ``(N, 3, 32, 32)`` tensor the model takes."""
    paths = expand_sources([str(image_dir)])
    runtime = Runtime(bundle, "ort-cpu")
    return [Path(p).read_bytes() for p in paths], np.stack(
        [runtime.prepare(p).array for p in paths]
    )


def _client(srv: LiveServer) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(srv.url.removeprefix("http://"), network_timeout=30)


@pytest.mark.parametrize("bundle_fixture", ["cls_bundle", "det_bundle"])
def test_tritonclient_metadata_and_infer(bundle_fixture: str, image_dir: Path, request) -> None:
    bundle = request.getfixturevalue(bundle_fixture)
    session = _ort(bundle)
    encoded, x = _real_batch(bundle, image_dir)
    names = [o.name for o in session.get_outputs()]
    expected = dict(zip(names, session.run(None, {"images": x}), strict=True))
    name = bundle.name  # the bundle folder's name
    app = create_app(str(bundle), max_batch=8, max_wait_ms=2, backend="ort-cpu")
    with LiveServer(app) as srv:
        client = _client(srv)
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(name) and client.is_model_ready(f"{name}_images")
        assert not client.is_model_ready("nope")
        assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
        meta = client.get_model_metadata(name)
        pipeline_meta = client.get_model_metadata(f"{name}_images", model_version="1")
        results = {}
        for binary in (True, False):
            given = triton.InferInput("images", list(x.shape), "FP32")
            given.set_data_from_numpy(x, binary_data=binary)
            wanted = [triton.InferRequestedOutput(n, binary_data=binary) for n in expected]
            results[binary] = client.infer(name, [given], outputs=wanted, request_id="r1")
        # No outputs named: tritonclient asks for every output in binary; gzip request body.
        default = client.infer(
            name, [given], request_compression_algorithm="gzip",
            response_compression_algorithm="deflate",
        )  # fmt: skip
        images = triton.InferInput("images", [len(encoded)], "BYTES")
        images.set_data_from_numpy(np.array(encoded, dtype=object))
        piped = client.infer(f"{name}_images", [images], parameters={"top_k": 2, "conf": 0.5})
        as_text = [base64.b64encode(e).decode() for e in encoded[:2]]
        json_in = triton.InferInput("images", [2], "BYTES")
        json_in.set_data_from_numpy(np.array(as_text, dtype=object), binary_data=False)
        piped_json = client.infer(
            f"{name}_images",
            [json_in],
            outputs=[triton.InferRequestedOutput("results", binary_data=False)],
            parameters={"top_k": 2, "conf": 0.5},
        )
        v1 = httpx.post(
            f"{srv.url}/v1/predict",
            params={"top_k": 2, "conf": 0.5},
            files=[("images", (f"{i}.jpg", e)) for i, e in enumerate(encoded)],
        ).json()["results"]
        client.close()
    assert meta["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 3, 32, 32]}]
    assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [
        (o.name, ORT_TYPES[o.type]) for o in session.get_outputs()
    ]
    assert pipeline_meta["inputs"][0]["datatype"] == "BYTES"
    for result in (*results.values(), default):
        for out_name, ref in expected.items():
            got = result.as_numpy(out_name)
            assert got.dtype == ref.dtype and got.shape == ref.shape, out_name
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6, err_msg=out_name)
    assert results[True].get_response()["id"] == "r1"
    records = [json.loads(r) for r in piped.as_numpy("results")]
    assert records == [{k: v for k, v in rec.items() if k != "path"} for rec in v1]
    assert [json.loads(r) for r in piped_json.as_numpy("results")] == records[:2]
    key = "topk" if bundle_fixture == "cls_bundle" else "boxes"
    assert all(key in rec for rec in records)


def _post(url: str, body: dict | bytes, header_length: int | None = None) -> httpx.Response:
    headers = {"Inference-Header-Content-Length": str(header_length)} if header_length else {}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(url, content=content, headers=headers, timeout=30)


def _binary_body(header: dict, raw: bytes) -> tuple[bytes, int]:
    text = json.dumps(header).encode()
    return text + raw, len(text)


def test_bad_tensors_get_400_and_bad_images_their_own_record(
    cls_bundle: Path, image_dir: Path
) -> None:
    good_image = Path(expand_sources([str(image_dir)])[0]).read_bytes()
    x = np.zeros((2, 3, 32, 32), np.float32)
    ok = {"name": "images", "datatype": "FP32", "shape": [2, 3, 32, 32]}
    zeros, five = [0] * 6144, [0] * 15360
    app = create_app(str(cls_bundle), max_wait_ms=1, max_images=4, model_name="digits")
    with LiveServer(app) as srv:
        url = f"{srv.url}/v2/models/digits/infer"
        bad = {
            "wrong name": _post(url, {"inputs": [{**ok, "name": "x", "data": x.ravel().tolist()}]}),
            "wrong dtype": _post(url, {"inputs": [{**ok, "datatype": "INT64", "data": zeros}]}),
            "wrong shape": _post(url, {"inputs": [{**ok, "shape": [2, 3, 16, 64], "data": zeros}]}),
            "count": _post(url, {"inputs": [{**ok, "data": [0.0] * 6000}]}),
            "not numbers": _post(url, {"inputs": [{**ok, "shape": [1], "data": ["a"]}]}),
            "no data": _post(url, {"inputs": [ok]}),
            "no inputs": _post(url, {"inputs": []}),
            "not json": _post(url, b"\x00\x01 binary without its header length"),
            "too many": _post(url, {"inputs": [{**ok, "shape": [5, 3, 32, 32], "data": five}]}),
            "bytes size": _post(url, *_binary_body(
                {"inputs": [{**ok, "parameters": {"binary_data_size": 100}}]}, x.tobytes()
            )),
            "left over": _post(url, *_binary_body(
                {"inputs": [{**ok, "parameters": {"binary_data_size": x.nbytes}}]},
                x.tobytes() + b"xx",
            )),
            "header length": _post(url, b'{"inputs": []}', header_length=999),
            "unknown output": _post(url, {"inputs": [{**ok, "data": x.ravel().tolist()}],
                                          "outputs": [{"name": "probs"}]}),
            "bytes to tensor model": _post(url, {"inputs": [
                {"name": "images", "datatype": "BYTES", "shape": [1], "data": ["aGk="]}]}),
            "bad top_k": _post(f"{srv.url}/v2/models/digits_images/infer", {
                "inputs": [{"name": "images", "datatype": "BYTES", "shape": [1], "data": ["aGk="]}],
                "parameters": {"top_k": "many"}}),
            "no readable image": _post(f"{srv.url}/v2/models/digits_images/infer", {
                "inputs": [{"name": "images", "datatype": "BYTES", "shape": [2],
                            "data": ["aGVsbG8=", "not base64!"]}]}),
        }  # fmt: skip
        unknown = _post(f"{srv.url}/v2/models/other/infer", {"inputs": [ok]})
        version = httpx.get(f"{srv.url}/v2/models/digits/versions/7")
        mixed = _post(f"{srv.url}/v2/models/digits_images/infer", {"inputs": [
            {"name": "images", "datatype": "BYTES", "shape": [3],
             "data": [base64.b64encode(good_image).decode(), "aGVsbG8=", "%%"]}]})  # fmt: skip
        client = _client(srv)
        with pytest.raises(InferenceServerException, match="must be FP32"):
            wrong = triton.InferInput("images", [2, 3, 32, 32], "FP16")
            wrong.set_data_from_numpy(x.astype(np.float16))
            client.infer("digits", [wrong])
        client.close()
        v1 = httpx.post(
            f"{srv.url}/v1/predict",
            files=[("images", ("good.jpg", good_image)), ("images", ("bad.jpg", b"not a jpeg"))],
        )
        v1_all_bad = httpx.post(f"{srv.url}/v1/predict", files={"images": ("b.jpg", b"nope")})
        alive = httpx.get(f"{srv.url}/v2/health/ready").status_code
        metrics = scrape(srv.url)
        schema = httpx.get(f"{srv.url}/openapi.json").json()
    for case, reply in bad.items():
        assert reply.status_code == 400, (case, reply.status_code, reply.text)
        assert reply.json()["error"], case
    assert "[2, 3, 16, 64]" in bad["wrong shape"].json()["error"]
    assert "binary_data_size is 100" in bad["bytes size"].json()["error"]
    assert unknown.status_code == 404 and "digits_images" in unknown.json()["error"]
    assert version.status_code == 404
    assert mixed.status_code == 200
    first, second, third = (json.loads(r) for r in mixed.json()["outputs"][0]["data"])
    assert first["topk"] and "not an image" in second["error"] and "base64" in third["error"]
    assert v1.status_code == 200
    good_rec, bad_rec = v1.json()["results"]
    assert good_rec["topk"] and bad_rec == {"path": "bad.jpg", "error": bad_rec["error"]}
    assert v1_all_bad.status_code == 422 and "b.jpg" in v1_all_bad.json()["error"]
    assert alive == 200
    codes = {dict(labels)["code"] for name, labels in metrics if name.endswith("requests_total")}
    assert not any(code.startswith("5") for code in codes), codes
    assert metrics[("simmim_serve_image_errors_total", ())] == 6  # 2 + 2 in v2, 1 + 1 in v1
    results = schema["components"]["schemas"]["PredictResponse"]["properties"]["results"]
    refs = {item["$ref"].rsplit("/", 1)[1] for item in results["items"]["anyOf"]}
    assert refs == {"ClassificationResult", "DetectionResult", "ImageFailure"}
    assert "/v2/models/{model_name}/infer" in schema["paths"]
    with pytest.raises(UserError, match="--model-name"):
        create_app(str(cls_bundle), model_name="my model/v2")
