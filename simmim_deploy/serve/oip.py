"""Open Inference Protocol (KServe v2) tensors over HTTP: parse an infer request, encode a reply.

Both encodings a client may use are read: JSON tensors (``"data"``: a flat, row-major list) and
Triton's binary tensor data extension, tritonclient's default (a JSON header of
``Inference-Header-Content-Length`` bytes, then each binary tensor's raw little-endian bytes in
input order, sized by its ``binary_data_size`` parameter; ``BYTES`` elements are each a 4-byte
little-endian length followed by the bytes). Every malformed tensor (shape, datatype, byte
count, name, JSON) raises :class:`~simmim_deploy.serve.http_input.ApiError` with status 400.

References: https://kserve.github.io/website/docs/concepts/architecture/data-plane/v2-protocol
and https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_binary_data.md
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simmim_deploy.serve.http_input import ApiError

HEADER_LENGTH = "Inference-Header-Content-Length"
# Protocol datatypes and the numpy dtype each is sent as (little-endian on the wire).
DTYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}
_FROM_NUMPY = {np.dtype(v).name: k for k, v in DTYPES.items() if k != "BYTES"}


def datatype_of(array: np.ndarray) -> str:
    """Protocol datatype of a numpy array (object/bytes arrays are ``BYTES``)."""
    if array.dtype == np.object_ or array.dtype.kind in ("S", "U"):
        return "BYTES"
    return _FROM_NUMPY[array.dtype.name]


@dataclass(frozen=True)
class Tensor:
    """One named tensor; ``BYTES`` data is an object array of ``bytes``.

    ``binary`` says the tensor came in the binary extension (raw bytes), not as JSON text.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray
    binary: bool = False


@dataclass(frozen=True)
class InferRequest:
    """A parsed ``POST /v2/models/{name}/infer`` body."""

    id: str | None
    inputs: list[Tensor]
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] | None = None  # requested output names; None: every output
    binary_outputs: dict[str, bool] = field(default_factory=dict)  # per-output ``binary_data``
    binary_default: bool = False  # ``binary_data_output``: outputs without their own choice

    def wants_binary(self, name: str) -> bool:
        """Whether output ``name`` goes in the binary extension."""
        return self.binary_outputs.get(name, self.binary_default)


def _bad(message: str) -> ApiError:
    return ApiError(400, message)


def _header(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    size = len(body)
    if header_length is not None:
        if not header_length.strip().isdigit():
            raise _bad(f"{HEADER_LENGTH} must be a byte count, got {header_length!r}")
        size = int(header_length)
        if size == 0 or size > len(body):
            raise _bad(f"{HEADER_LENGTH} is {size} but the body has {len(body)} bytes")
    try:
        header = json.loads(bytes(body[:size]))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        hint = f" (binary tensors need the {HEADER_LENGTH} header)" if header_length is None else ""
        raise _bad(f"the request header is not valid JSON: {exc}{hint}") from None
    if not isinstance(header, dict):
        raise _bad("the request must be a JSON object with an 'inputs' list")
    return header, memoryview(body)[size:]


def _shape(raw: Any, name: str) -> tuple[int, ...]:
    ok = isinstance(raw, list) and all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in raw
    )
    if not ok:
        raise _bad(f"input '{name}': 'shape' must be a list of non-negative integers, got {raw!r}")
    return tuple(raw)


def _split_bytes(raw: memoryview, count: int, name: str) -> np.ndarray:
    """Length-prefixed ``BYTES`` elements -> object array of ``count`` bytes objects."""
    out, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise _bad(f"input '{name}': truncated BYTES element length")
        (length,) = struct.unpack_from("<I", raw, pos)
        if pos + 4 + length > len(raw):
            raise _bad(f"input '{name}': BYTES element of {length} bytes runs past its data")
        out.append(bytes(raw[pos + 4 : pos + 4 + length]))
        pos += 4 + length
    if len(out) != count:
        raise _bad(f"input '{name}': {len(out)} BYTES elements for a shape of {count}")
    array = np.empty(len(out), dtype=object)
    array[:] = out
    return array


def _from_binary(raw: memoryview, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    count = math.prod(shape)
    if datatype == "BYTES":
        return _split_bytes(raw, count, name).reshape(shape)
    dtype = np.dtype(DTYPES[datatype]).newbyteorder("<")
    if len(raw) != count * dtype.itemsize:
        raise _bad(
            f"input '{name}': binary_data_size is {len(raw)} bytes but shape {list(shape)} of "
            f"{datatype} needs {count * dtype.itemsize}"
        )
    return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="), copy=True).reshape(shape)


# JSON number kinds each datatype accepts (numpy kinds: b bool, i/u integer, f float).
_JSON_KINDS = {"BOOL": "b", "FP16": "biuf", "FP32": "biuf", "FP64": "biuf"}


def _from_json(data: Any, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    count = math.prod(shape)
    try:
        if datatype == "BYTES":
            flat = np.asarray(data, dtype=object).reshape(-1)
            if not all(isinstance(v, str) for v in flat):
                raise ValueError("BYTES data must be strings")
            array = np.empty(flat.size, dtype=object)
            array[:] = [v.encode() for v in flat]
        else:
            array = np.asarray(data).reshape(-1)
            if array.size and array.dtype.kind not in _JSON_KINDS.get(datatype, "biu"):
                raise ValueError(f"found {array.dtype.name} values")
            array = array.astype(DTYPES[datatype])
    except (ValueError, TypeError, OverflowError) as exc:
        raise _bad(f"input '{name}': 'data' is not a list of {datatype} values ({exc})") from None
    if array.size != count:
        raise _bad(f"input '{name}': {array.size} values in 'data' for shape {list(shape)}")
    return array.reshape(shape)


def _tensor(spec: Any, binary: memoryview, offset: int) -> tuple[Tensor, int]:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise _bad("every input needs a 'name', a 'datatype' and a 'shape'")
    name, datatype = spec["name"], spec.get("datatype")
    if datatype not in DTYPES:
        raise _bad(f"input '{name}': unknown datatype {datatype!r}; one of {sorted(DTYPES)}")
    shape = _shape(spec.get("shape"), name)
    params = spec.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is None:
        if "data" not in spec:
            raise _bad(f"input '{name}' has neither 'data' nor a binary_data_size parameter")
        return Tensor(
            name, datatype, shape, _from_json(spec["data"], datatype, shape, name)
        ), offset
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _bad(f"input '{name}': binary_data_size must be a byte count, got {size!r}")
    if offset + size > len(binary):
        raise _bad(
            f"input '{name}': binary_data_size {size} runs past the {len(binary)} binary bytes"
        )
    data = _from_binary(binary[offset : offset + size], datatype, shape, name)
    return Tensor(name, datatype, shape, data, binary=True), offset + size


def _requested(header: dict[str, Any]) -> tuple[list[str] | None, dict[str, bool]]:
    outputs = header.get("outputs")
    if outputs is None:
        return None, {}
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise _bad("'outputs' must be a list of objects with a 'name'")
    binary = {}
    for out in outputs:
        params = out.get("parameters") or {}
        if isinstance(params, dict) and "binary_data" in params:
            binary[out["name"]] = bool(params["binary_data"])
    return [o["name"] for o in outputs], binary


def parse_request(body: bytes, header_length: str | None = None) -> InferRequest:
    """Parse an infer request body.

    Args:
        body: the whole HTTP body.
        header_length: the ``Inference-Header-Content-Length`` header (None: JSON only).

    Returns:
        The inputs in request order, the requested outputs and which are wanted in binary.

    Raises:
        ApiError: 400 for anything the protocol does not allow.
    """
    header, binary = _header(body, header_length)
    specs = header.get("inputs")
    if not isinstance(specs, list) or not specs:
        raise _bad("the request needs a non-empty 'inputs' list")
    inputs, offset = [], 0
    for spec in specs:
        tensor, offset = _tensor(spec, binary, offset)
        inputs.append(tensor)
    if offset != len(binary):
        raise _bad(f"{len(binary) - offset} binary bytes after the last input's binary_data_size")
    names = [t.name for t in inputs]
    if len(set(names)) != len(names):
        raise _bad(f"an input name appears twice: {names}")
    params = header.get("parameters") or {}
    if not isinstance(params, dict):
        raise _bad("'parameters' must be a JSON object")
    outputs, binary_outputs = _requested(header)
    request_id = header.get("id")
    return InferRequest(
        id=str(request_id) if request_id is not None else None,
        inputs=inputs,
        parameters=params,
        outputs=outputs,
        binary_outputs=binary_outputs,
        binary_default=bool(params.get("binary_data_output", False)),
    )


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding: gzip | deflate`` (tritonclient's request compression).

    Raises:
        ApiError: 415 for another encoding, 413 past ``limit`` bytes, 400 for corrupt data.
    """
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise ApiError(415, f"Content-Encoding {encoding!r} is not supported: gzip or deflate")
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise _bad(f"the {encoding} body is corrupt: {exc}") from None
    if len(out) > limit:
        raise ApiError(413, f"the decompressed body exceeds the limit of {limit} bytes")
    return out


def _raw_bytes(array: np.ndarray) -> bytes:
    if datatype_of(array) != "BYTES":
        return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    parts = []
    for item in array.reshape(-1):
        data = item if isinstance(item, bytes) else str(item).encode()
        parts.append(struct.pack("<I", len(data)) + data)
    return b"".join(parts)


def _json_data(array: np.ndarray) -> list[Any]:
    flat = array.reshape(-1)
    if datatype_of(array) == "BYTES":
        return [v.decode() if isinstance(v, bytes) else str(v) for v in flat]
    return flat.tolist()


def encode_response(
    model_name: str,
    model_version: str,
    request: InferRequest,
    outputs: dict[str, np.ndarray],
) -> tuple[bytes, dict[str, str]]:
    """The reply body and its headers (``Content-Type``, and the header length when binary).

    Args:
        model_name: the model answered for.
        model_version: its version string.
        request: the parsed request (id, binary choices).
        outputs: the tensors to send, by name, in the order to send them.
    """
    entries, chunks = [], []
    for name, array in outputs.items():
        entry: dict[str, Any] = {
            "name": name,
            "datatype": datatype_of(array),
            "shape": list(array.shape),
        }
        if request.wants_binary(name):
            raw = _raw_bytes(array)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _json_data(array)
        entries.append(entry)
    reply: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request.id is not None:
        reply["id"] = request.id
    reply["outputs"] = entries
    text = json.dumps(reply, separators=(",", ":")).encode()
    if not chunks:
        return text, {"content-type": "application/json"}
    headers = {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(text))}
    return text + b"".join(chunks), headers
