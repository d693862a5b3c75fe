"""Open Inference Protocol v2 (KServe v2, Triton's HTTP API) routes beside ``/v1/predict``.

The server holds two models, both answered through the same dynamic batcher:

* ``NAME`` - the network itself, as Triton serves the bundle's ONNX file: input ``images``
  ``FP32 [N, 3, H, W]`` (already preprocessed), outputs the model's named tensors (``logits``,
  or ``boxes``/``scores``/``labels``/``num_detections``). A client written for the Triton
  repository of ``simmim-deploy triton`` works unchanged against this server.
* ``NAME_images`` - the whole pipeline: input ``images`` ``BYTES [N]`` (encoded JPEG/PNG/...
  files; base64 text when sent as JSON, raw bytes in the binary extension), output ``results``
  ``BYTES [N]``: per image the UTF-8 JSON record of ``/v1/predict`` without ``path``
  (``{"width", "height", "topk" | "boxes"}``, or ``{"error"}`` for an unreadable image).
  Request parameters ``top_k`` and ``conf`` override the server defaults.

``NAME`` is the bundle folder's name unless ``--model-name`` says otherwise; the only version is
``1``. Health routes need no token; metadata and infer do when ``--token-file`` is set.
"""

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from simmim_deploy.serve import oip
from simmim_deploy.serve.batcher import DynamicBatcher
from simmim_deploy.serve.handlers import predict_images, run_batched, within
from simmim_deploy.serve.http_input import ApiError, check_token, read_body
from simmim_deploy.serve.metrics import ServerMetrics
from simmim_deploy.serve.runtime import Runtime

VERSION = "1"
IMAGES_SUFFIX = "_images"
_PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "tensorrt": "tensorrt_plan"}


@dataclass(frozen=True)
class V2Model:
    """A model as the protocol describes it (``GET /v2/models/{name}``)."""

    name: str
    platform: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": [VERSION],
            "platform": self.platform,
            "inputs": self.inputs,
            "outputs": self.outputs,
        }


def _dims(shape: list[Any]) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in shape]  # symbolic (batch...) -> -1


def v2_models(runtime: Runtime, name: str) -> dict[str, V2Model]:
    """The tensor model ``name`` and the pipeline model ``name_images`` of a bundle."""
    m = runtime.manifest
    library = str(runtime.backend.describe().get("backend", "unknown"))
    tensor_in = {
        "name": m["input"]["name"],
        "datatype": "FP32",
        "shape": _dims(m["input"]["shape"]),
    }
    tensor_out = [
        {
            "name": o["name"],
            "datatype": oip.datatype_of(np.empty(0, o.get("dtype", "float32"))),
            "shape": _dims(o["shape"]),
        }
        for o in m["outputs"]
    ]
    images = name + IMAGES_SUFFIX
    return {
        name: V2Model(name, _PLATFORMS.get(library, library), [tensor_in], tensor_out),
        images: V2Model(
            images,
            "simmim_deploy_pipeline",
            [{"name": "images", "datatype": "BYTES", "shape": [-1]}],
            [{"name": "results", "datatype": "BYTES", "shape": [-1]}],
        ),
    }


def _only_input(model: V2Model, request: oip.InferRequest) -> oip.Tensor:
    spec = model.inputs[0]
    names = [t.name for t in request.inputs]
    if names != [spec["name"]]:
        raise ApiError(
            400,
            f"model '{model.name}' takes one input '{spec['name']}' ({spec['datatype']} "
            f"{spec['shape']}), got {names}",
        )
    tensor = request.inputs[0]
    if tensor.datatype != spec["datatype"]:
        base = model.name.removesuffix(IMAGES_SUFFIX)
        other = base if spec["datatype"] == "BYTES" else base + IMAGES_SUFFIX
        what = "preprocessed FP32 tensors" if spec["datatype"] == "BYTES" else "encoded images"
        hint = f"; {what} go to model '{other}'"
        raise ApiError(
            400, f"input '{tensor.name}' must be {spec['datatype']}, got {tensor.datatype}{hint}"
        )
    return tensor


def _check_batch(n: int, max_images: int, name: str) -> None:
    if not 1 <= n <= max_images:
        raise ApiError(400, f"input '{name}' holds {n} images; send 1 to {max_images}")


def _selected(request: oip.InferRequest, model: V2Model) -> list[str]:
    available = [o["name"] for o in model.outputs]
    if request.outputs is None:
        return available
    unknown = [n for n in request.outputs if n not in available]
    if unknown:
        raise ApiError(400, f"unknown output(s) {unknown}: model '{model.name}' has {available}")
    return request.outputs


class V2Handler:
    """Infer for both models; every protocol mistake is a 400 raised before any inference."""

    def __init__(
        self,
        runtime: Runtime,
        batcher: DynamicBatcher,
        metrics: ServerMetrics,
        max_images: int,
        defaults: tuple[int, float],
    ) -> None:
        self.runtime, self.batcher, self.metrics = runtime, batcher, metrics
        self.max_images, self.defaults = max_images, defaults

    async def tensors(self, model: V2Model, request: oip.InferRequest) -> dict[str, np.ndarray]:
        tensor = _only_input(model, request)
        want = tuple(model.inputs[0]["shape"][1:])
        if len(tensor.shape) != 4 or tensor.shape[1:] != want:
            raise ApiError(
                400, f"input '{tensor.name}' has shape {list(tensor.shape)}; expected [N, "
                f"{', '.join(map(str, want))}] (preprocess first, or send encoded images to "
                f"'{model.name}{IMAGES_SUFFIX}')",
            )  # fmt: skip
        _check_batch(tensor.shape[0], self.max_images, tensor.name)
        names = _selected(request, model)
        rows = await run_batched(self.batcher, list(tensor.data))
        return {n: np.concatenate([r[n] for r in rows], axis=0) for n in names}

    def _options(self, params: dict[str, Any]) -> tuple[int, float]:
        k, c = params.get("top_k", self.defaults[0]), params.get("conf", self.defaults[1])
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ApiError(400, f"parameter top_k must be an integer >= 1, got {k!r}")
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0.0 <= c <= 1.0:
            raise ApiError(400, f"parameter conf must be a number in [0, 1], got {c!r}")
        return k, float(c)

    async def images(self, model: V2Model, request: oip.InferRequest) -> dict[str, np.ndarray]:
        tensor = _only_input(model, request)
        if len(tensor.shape) not in (1, 2) or tensor.shape[1:] not in ((), (1,)):
            raise ApiError(400, f"input 'images' has shape {list(tensor.shape)}; expected [N]")
        _check_batch(tensor.shape[0], self.max_images, tensor.name)
        _selected(request, model)
        k, c = self._options(request.parameters)
        blobs: list[bytes | str] = []
        for value in tensor.data.reshape(-1):
            try:
                blobs.append(value if tensor.binary else base64.b64decode(value, validate=True))
            except (binascii.Error, ValueError):
                blobs.append("not base64 (images sent as JSON BYTES must be base64 text)")
        sent = [(f"images[{i}]", b) for i, b in enumerate(blobs) if isinstance(b, bytes)]
        self.metrics.unreadable(len(blobs) - len(sent))
        if not sent:
            raise ApiError(400, f"images[0]: {blobs[0]}")
        done = iter(await predict_images(
            self.runtime, self.batcher, self.metrics, sent, k, c, error_status=400
        ))  # fmt: skip
        records = []
        for blob in blobs:
            rec = {"error": blob} if isinstance(blob, str) else next(done)
            rec.pop("path", None)
            records.append(json.dumps(rec, separators=(",", ":")).encode())
        results = np.empty(len(records), dtype=object)
        results[:] = records
        return {"results": results}


def add_v2_routes(
    app: Any,
    fastapi: Any,
    cfg: Any,
    runtime: Runtime,
    batcher: DynamicBatcher,
    metrics: ServerMetrics,
    name: str,
) -> None:
    """Register ``/v2``, health, model metadata/ready and infer (with ``/versions/1`` too)."""
    from fastapi.responses import Response

    models = v2_models(runtime, name)
    handler = V2Handler(runtime, batcher, metrics, cfg.max_images, (cfg.top_k, cfg.conf))

    def lookup(model_name: str, version: str | None) -> V2Model:
        model = models.get(model_name)
        if model is None:
            raise ApiError(404, f"unknown model '{model_name}': this server has {sorted(models)}")
        if version not in (None, "", VERSION):
            raise ApiError(404, f"model '{model_name}' has no version '{version}' (only {VERSION})")
        return model

    @app.get("/v2", tags=["v2"], summary="Server metadata")
    async def server_metadata() -> dict[str, Any]:
        return {
            "name": "simmim-deploy",
            "version": app.version,
            "extensions": ["binary_tensor_data"],
        }

    @app.get("/v2/health/live", tags=["v2"], summary="Liveness")
    async def live() -> Any:
        return Response(status_code=200)

    @app.get("/v2/health/ready", tags=["v2"], summary="Readiness (the model can run)")
    async def ready() -> Any:
        return Response(status_code=200 if batcher.running else 503)

    # ``version`` is read from the path (the /versions/{version} routes), not a query option.
    async def model_metadata(request: fastapi.Request, model_name: str) -> Any:
        check_token(request, cfg.token)
        return lookup(model_name, request.path_params.get("version")).metadata()

    async def model_ready(request: fastapi.Request, model_name: str) -> Any:
        lookup(model_name, request.path_params.get("version"))
        return Response(status_code=200 if batcher.running else 503)

    async def infer(request: fastapi.Request, model_name: str) -> Any:
        check_token(request, cfg.token)
        model = lookup(model_name, request.path_params.get("version"))
        body = await read_body(request, cfg.max_body_bytes)
        encoding = request.headers.get("content-encoding")
        body = oip.decompress(body, encoding, cfg.max_body_bytes)
        parsed = oip.parse_request(body, request.headers.get(oip.HEADER_LENGTH))
        run = handler.images if model.name.endswith(IMAGES_SUFFIX) else handler.tensors
        outputs = await within(run(model, parsed), cfg.request_timeout_s, metrics)
        content, headers = oip.encode_response(model.name, VERSION, parsed, outputs)
        return Response(content=content, headers=headers)

    for prefix in ("/v2/models/{model_name}", "/v2/models/{model_name}/versions/{version}"):
        app.get(prefix, tags=["v2"], summary="Model metadata")(model_metadata)
        app.get(f"{prefix}/ready", tags=["v2"], summary="Model readiness")(model_ready)
        app.post(f"{prefix}/infer", tags=["v2"], summary="Inference (JSON or binary tensors)")(
            infer
        )
