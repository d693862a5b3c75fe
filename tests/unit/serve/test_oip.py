"""The v2 tensor codec alone: binary and JSON tensors in, binary and JSON tensors out."""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest

from simmim_deploy.serve import oip
from simmim_deploy.serve.http_input import ApiError


def _binary(header: dict, *chunks: bytes) -> tuple[bytes, str]:
    text = json.dumps(header).encode()
    return text + b"".join(chunks), str(len(text))


def test_binary_and_json_inputs_in_order() -> None:
    x = np.arange(6, dtype=np.float16).reshape(2, 3)
    blobs = [b"\xff\xd8jpeg", b"", b"png"]
    packed = b"".join(struct.pack("<I", len(b)) + b for b in blobs)
    body, length = _binary(
        {
            "id": 7,
            "inputs": [
                {"name": "a", "datatype": "FP16", "shape": [2, 3],
                 "parameters": {"binary_data_size": x.nbytes}},
                {"name": "b", "datatype": "INT64", "shape": [2], "data": [[4], [5]]},
                {"name": "c", "datatype": "BYTES", "shape": [3],
                 "parameters": {"binary_data_size": len(packed)}},
            ],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}, {"name": "z"}],
        },
        x.tobytes(),
        packed,
    )  # fmt: skip
    req = oip.parse_request(body, length)
    a, b, c = req.inputs
    np.testing.assert_array_equal(a.data, x)
    assert a.binary and not b.binary and b.data.dtype == np.int64 and b.data.tolist() == [4, 5]
    assert list(c.data) == blobs and req.id == "7"
    assert req.outputs == ["y", "z"] and req.wants_binary("y") and not req.wants_binary("z")


def test_response_mixes_binary_and_json_outputs() -> None:
    req = oip.InferRequest(id="r", inputs=[], outputs=["y", "z"], binary_outputs={"y": True})
    y = np.array([[1.5, -2.0]], np.float32)
    z = np.empty(2, dtype=object)
    z[:] = [b'{"k":1}', b"x"]
    body, headers = oip.encode_response("m", "1", req, {"y": y, "z": z})
    size = int(headers[oip.HEADER_LENGTH])
    header = json.loads(body[:size])
    assert header["id"] == "r" and header["model_name"] == "m"
    out_y, out_z = header["outputs"]
    assert out_y["parameters"]["binary_data_size"] == 8 and "data" not in out_y
    assert out_z == {"name": "z", "datatype": "BYTES", "shape": [2], "data": ['{"k":1}', "x"]}
    np.testing.assert_array_equal(np.frombuffer(body[size:], np.float32).reshape(1, 2), y)
    json_only, plain = oip.encode_response("m", "1", oip.InferRequest(None, []), {"y": y})
    assert plain["content-type"] == "application/json"
    assert json.loads(json_only)["outputs"][0]["data"] == [1.5, -2.0]


@pytest.mark.parametrize(
    ("header", "raw", "message"),
    [
        ({"inputs": [{"name": "a", "datatype": "FP32", "shape": [2],
                      "parameters": {"binary_data_size": 4}}]}, b"\0" * 4, "needs 8"),
        ({"inputs": [{"name": "a", "datatype": "BYTES", "shape": [2],
                      "parameters": {"binary_data_size": 9}}]},
         struct.pack("<I", 5) + b"abcde", "1 BYTES elements for a shape of 2"),
        ({"inputs": [{"name": "a", "datatype": "BYTES", "shape": [1],
                      "parameters": {"binary_data_size": 6}}]},
         struct.pack("<I", 50) + b"ab", "runs past its data"),
        ({"inputs": [{"name": "a", "datatype": "INT32", "shape": [1], "data": [1.5]}]}, b"",
         "not a list of INT32"),
        ({"inputs": [{"name": "a", "datatype": "FP32", "shape": [-1], "data": []}]}, b"",
         "non-negative integers"),
        ({"inputs": [{"name": "a", "datatype": "FP8", "shape": [1], "data": [1]}]}, b"",
         "unknown datatype"),
        ({"inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "data": [1]},
                     {"name": "a", "datatype": "FP32", "shape": [1], "data": [1]}]}, b"",
         "appears twice"),
    ],
)  # fmt: skip
def test_malformed_tensors_are_400(header: dict, raw: bytes, message: str) -> None:
    body, length = _binary(header, raw)
    with pytest.raises(ApiError, match=message) as info:
        oip.parse_request(body, length if raw else None)
    assert info.value.status == 400


def test_decompress_bounds_and_refuses() -> None:
    data = b'{"inputs": []}' * 100
    assert oip.decompress(gzip.compress(data), "gzip", 10_000) == data
    with pytest.raises(ApiError) as big:
        oip.decompress(gzip.compress(b"\0" * 100_000), "gzip", 1000)  # a zip bomb stops early
    with pytest.raises(ApiError) as other:
        oip.decompress(data, "br", 10_000)
    with pytest.raises(ApiError) as corrupt:
        oip.decompress(b"not gzip", "gzip", 10_000)
    assert (big.value.status, other.value.status, corrupt.value.status) == (413, 415, 400)
