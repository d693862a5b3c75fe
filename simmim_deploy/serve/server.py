"""HTTP serving: FastAPI app with dynamic batching, metrics and hardening.

``POST /v1/predict`` takes one or more images (multipart field ``images``, or a raw image body)
and answers ``{"results": [...]}`` with one ``predict`` record per image (an unreadable image
gets its own ``{"path", "error"}`` record, the others their results); the Open Inference
Protocol v2 routes (``/v2/...``, see :mod:`simmim_deploy.serve.server_v2`) serve the same model
to tritonclient and KServe clients; ``GET /healthz``; ``GET /metrics`` (Prometheus); OpenAPI
docs at ``/docs``. Every bad request gets a 4xx with ``{"error": "..."}`` and the server keeps
serving. Requires the ``serve`` extra.

Example:
    >>> import uvicorn
    >>> uvicorn.run(create_app("bundle", max_batch=32), host="127.0.0.1", port=8000)
"""

import asyncio
import contextlib
import json
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from simmim_deploy.core.backends import backend_help
from simmim_deploy.core.config import option
from simmim_deploy.core.errors import UserError, require
from simmim_deploy.serve.batcher import DynamicBatcher
from simmim_deploy.serve.handlers import predict_images, within
from simmim_deploy.serve.http_input import ApiError, check_token, extract_images, read_body
from simmim_deploy.serve.images import DEFAULT_MAX_PIXELS, FAST_DECODE, FAST_DECODE_HELP
from simmim_deploy.serve.metrics import ServerMetrics
from simmim_deploy.serve.runtime import Runtime

ENV_CONFIG = "SIMMIM_DEPLOY_SERVE_CONFIG"  # JSON ServeConfig for multi-worker factories
MAX_BODY_MB = 20  # default largest request body, MiB
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a URL path segment without escaping


@dataclass(frozen=True)
class ServeConfig:
    """Options of ``simmim-deploy serve`` that shape the app (validated on construction)."""

    bundle: str = option(
        help="Bundle directory (from export), or a checkpoint with --backend torch.",
        positional=True,
    )
    max_batch: int = option(32, "Most images per inference batch.")
    max_wait_ms: float = option(5.0, "How long a batch waits to fill up.")
    token: str | None = option(None, "Bearer token requests must carry.", cli=False)
    max_body_bytes: int = option(MAX_BODY_MB << 20, "Largest request body (413 above).", cli=False)
    max_pixels: int = option(DEFAULT_MAX_PIXELS, "Largest image in pixels (413 above).")
    max_images: int = option(64, "Most images in one request.")
    max_queue: int = option(1024, "Most images waiting for a batch (503 above).")
    request_timeout_s: float = option(30.0, "Seconds before a request gets 504.", flag="--timeout")
    backend: str = option("auto", "Inference backend: " + backend_help("torch"))
    precision: str | None = option(None, "Bundle artefact: fp32, fp16, int8...")
    threads: int | None = option(None, "Inference threads (ONNX Runtime intra-op).")
    top_k: int = option(5, "Default classes per image (?top_k= overrides).")
    conf: float = option(
        0.25, "Default minimum box score (?conf= overrides).", flag="--score-thresh",
        old_flags=("--conf",),
    )  # fmt: skip
    model_name: str | None = option(
        None, "Model name in /v2/models/NAME (default: the bundle folder's name)."
    )
    fast_decode: bool = option(FAST_DECODE, FAST_DECODE_HELP)

    def __post_init__(self) -> None:
        checks = {
            "--max-batch": self.max_batch >= 1,
            "--max-wait-ms": self.max_wait_ms >= 0,
            "max_body_bytes": self.max_body_bytes >= 1,
            "max_pixels": self.max_pixels >= 1,
            "max_images": self.max_images >= 1,
            "max_queue": self.max_queue >= self.max_batch,
            "--timeout": self.request_timeout_s > 0,
            "--top-k": self.top_k >= 1,
            "--score-thresh": 0.0 <= self.conf <= 1.0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise UserError(f"invalid serve option(s): {', '.join(bad)}")
        if self.token is not None and not self.token.strip():
            raise UserError("the token file is empty; put a secret token in it")
        if self.model_name is not None and not _NAME.fullmatch(self.model_name):
            raise UserError(
                f"--model-name {self.model_name!r}: use letters, digits, '.', '_' or '-'"
            )

    @property
    def v2_name(self) -> str:
        """The model's name in ``/v2/models/{name}``."""
        return self.model_name or Path(self.bundle).resolve().name


def create_app(bundle: str | ServeConfig, runtime: Runtime | None = None, **options: Any) -> Any:
    """Build the FastAPI app for ``bundle``; keyword options are :class:`ServeConfig` fields.

    Args:
        bundle: bundle directory, or a whole :class:`ServeConfig` (then no ``options``).
        runtime: an already opened :class:`Runtime` (e.g. with a PyTorch backend); default:
            opened from ``bundle`` with ``options["backend"]``.
        **options: ``max_batch``, ``max_wait_ms``, ``token``, ``max_body_bytes``, ``max_pixels``,
            ``request_timeout_s``, ``backend``...
    """
    cfg = bundle if isinstance(bundle, ServeConfig) else ServeConfig(bundle=str(bundle), **options)
    fastapi = require("fastapi", "serve", "the HTTP server")
    runtime = runtime or Runtime(
        cfg.bundle, cfg.backend, cfg.precision, cfg.threads, max_pixels=cfg.max_pixels,
        fast_decode=cfg.fast_decode,
    )  # fmt: skip
    runtime.max_pixels, runtime.fast_decode = cfg.max_pixels, cfg.fast_decode
    metrics = ServerMetrics()
    batcher = DynamicBatcher(runtime.infer, cfg.max_batch, cfg.max_wait_ms, cfg.max_queue, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        batcher.start()
        yield
        # uvicorn has already waited for in-flight requests; drain anything still queued.
        await asyncio.to_thread(batcher.close, cfg.request_timeout_s)
        metrics.close()

    app = fastapi.FastAPI(
        title="simmim-deploy",
        version=str(runtime.manifest.get("versions", {}).get("simmim_deploy", "")) or "1",
        description=f"{runtime.task} with {runtime.manifest.get('model_name')}",
        lifespan=lifespan,
    )
    app.state.runtime, app.state.metrics, app.state.config = runtime, metrics, cfg
    _install_error_handlers(app, fastapi, metrics)
    _add_routes(app, fastapi, cfg, runtime, batcher, metrics)
    from simmim_deploy.serve.server_v2 import add_v2_routes

    add_v2_routes(app, fastapi, cfg, runtime, batcher, metrics, cfg.v2_name)
    return app


def create_app_from_env() -> Any:
    """Factory for ``uvicorn --factory`` with several workers (config in :data:`ENV_CONFIG`)."""
    options = json.loads(os.environ[ENV_CONFIG])
    return create_app(**options)


def config_to_env(cfg: ServeConfig) -> str:
    """The JSON that :func:`create_app_from_env` reads."""
    return json.dumps(asdict(cfg))


def _json_error(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _install_error_handlers(app: Any, fastapi: Any, metrics: ServerMetrics) -> None:
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    @app.exception_handler(ApiError)
    async def _api(request: Any, exc: ApiError) -> Any:
        return _json_error(exc.status, exc.message, exc.headers)

    @app.exception_handler(HTTPException)
    async def _http(request: Any, exc: HTTPException) -> Any:
        return _json_error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Any, exc: RequestValidationError) -> Any:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _json_error(422, f"invalid request: {where}: {first.get('msg', 'bad value')}")

    @app.middleware("http")
    async def _count(request: Any, call_next: Any) -> Any:
        start = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:  # noqa: BLE001 - a bug must not take the server down
            response = _json_error(500, "internal error; see the server log")
        route = request.scope.get("route")  # the template, e.g. /v2/models/{model_name}/infer
        path = getattr(route, "path", "other")
        timed = path.endswith(("/predict", "/infer"))
        metrics.request_done(path, response.status_code, time.perf_counter() - start, timed)
        return response


_OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "images": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                    "required": ["images"],
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _add_routes(
    app: Any,
    fastapi: Any,
    cfg: ServeConfig,
    runtime: Runtime,
    batcher: DynamicBatcher,
    metrics: ServerMetrics,
) -> None:
    from fastapi.responses import Response

    from simmim_deploy.serve import schemas

    @app.post(
        "/v1/predict",
        openapi_extra=_OPENAPI_BODY,
        summary="Predict one or more images",
        response_model=schemas.PredictResponse,
        responses=schemas.error_responses(400, 401, 413, 415, 422, 503, 504),
    )
    async def predict(
        request: fastapi.Request, top_k: int | None = None, conf: float | None = None
    ) -> dict[str, Any]:
        """Same records as ``simmim-deploy predict``, one per image in upload order.

        An unreadable image gets ``{"path", "error"}`` and the others their results (200); the
        request fails (413/422) only when none of its images can be read.
        """
        check_token(request, cfg.token)
        k, c = top_k or cfg.top_k, cfg.conf if conf is None else conf
        if k < 1 or not 0.0 <= c <= 1.0:
            raise ApiError(422, "top_k must be >= 1 and conf in [0, 1]")
        return await within(_handle(request, k, c), cfg.request_timeout_s, metrics)

    async def _handle(request: Any, k: int, c: float) -> dict[str, Any]:
        body = await read_body(request, cfg.max_body_bytes)
        images = await extract_images(request, body, cfg.max_images)
        return {"results": await predict_images(runtime, batcher, metrics, images, k, c)}

    @app.get("/healthz", summary="Liveness and model facts", response_model=schemas.Health)
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", **runtime.describe()}

    @app.get(
        "/metrics",
        summary="Prometheus metrics (all workers)",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}, **schemas.error_responses(401)},
    )
    async def prometheus(request: fastapi.Request) -> Any:
        check_token(request, cfg.token)
        content, media_type = metrics.render()
        return Response(content, media_type=media_type)
