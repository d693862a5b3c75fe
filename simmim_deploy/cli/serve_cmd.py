"""`simmim-deploy serve`: the HTTP server (FastAPI + uvicorn) with dynamic batching."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from simmim_deploy.core.backends import backend_help


def serve(
    bundle: Path = typer.Argument(..., help="Bundle directory (from export)."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind; 0.0.0.0 exposes the server."),
    port: int = typer.Option(8000, help="TCP port."),
    max_batch: int = typer.Option(32, help="Most images per inference batch."),
    max_wait_ms: float = typer.Option(5.0, help="How long a batch waits to fill up."),
    workers: int = typer.Option(1, help="Server processes, each with its own model."),
    token_file: Path | None = typer.Option(
        None, help="File holding a bearer token; requests without it get 401."
    ),
    backend: str = typer.Option("auto", help=backend_help("torch")),
    precision: str | None = typer.Option(None, help="Bundle artefact: fp32, fp16, int8..."),
    threads: int | None = typer.Option(None, help="Inference threads (ONNX Runtime intra-op)."),
    timeout: float = typer.Option(30.0, help="Seconds before a request gets 504."),
    max_body_mb: float = typer.Option(20.0, help="Largest request body in MiB (413 above)."),
    max_pixels: int = typer.Option(40_000_000, help="Largest image in pixels (413 above)."),
    top_k: int = typer.Option(5, help="Default classes per image (?top_k= overrides)."),
    conf: float = typer.Option(0.25, help="Default minimum box score (?conf= overrides)."),
    model_name: str | None = typer.Option(
        None, help="Model name in /v2/models/NAME (default: the bundle folder's name)."
    ),
) -> None:
    """Serve POST /v1/predict, the Open Inference Protocol v2 (/v2/...: tritonclient, KServe),
    GET /healthz, GET /metrics and the OpenAPI docs at /docs.

    Example: simmim-deploy serve runs/bundle --port 8000 --max-batch 32 --token-file token.txt
    """
    import os

    from simmim_deploy.core.errors import UserError, require
    from simmim_deploy.serve.server import ENV_CONFIG, ServeConfig, config_to_env, create_app

    uvicorn = require("uvicorn", "serve", "the HTTP server")
    token = None
    if token_file is not None:
        if not token_file.is_file():
            raise UserError(f"--token-file {token_file} does not exist")
        token = token_file.read_text(encoding="utf-8").strip()
    cfg = ServeConfig(
        str(bundle), max_batch, max_wait_ms, token, int(max_body_mb * 1024 * 1024), max_pixels,
        request_timeout_s=timeout, backend=backend, precision=precision, threads=threads,
        top_k=top_k, conf=conf, model_name=model_name,
    )  # fmt: skip
    if token is None and host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: serving on {host} without --token-file: anyone can call it", file=sys.stderr
        )
    # uvicorn first stops accepting, then waits this long for in-flight requests to finish.
    graceful = timeout + 5.0
    if workers > 1:
        from simmim_deploy.core.manifest import is_checkpoint

        if backend == "torch" or is_checkpoint(bundle):
            raise UserError("a checkpoint (--backend torch) is served with --workers 1 only")
        from simmim_deploy.core.manifest import read_manifest

        read_manifest(bundle)  # fail here, once, rather than in every worker
        os.environ[ENV_CONFIG] = config_to_env(cfg)
        from simmim_deploy.serve.metrics import shared_metrics_dir

        with shared_metrics_dir():  # /metrics sums every worker (prometheus multiprocess mode)
            uvicorn.run(
                "simmim_deploy.serve.server:create_app_from_env", factory=True, host=host,
                port=port, workers=workers, timeout_graceful_shutdown=graceful, log_level="info",
            )  # fmt: skip
        return
    from simmim_deploy.cli.targets import open_target

    runtime = None
    runner, manifest = open_target(bundle, backend, threads)
    if runner is not None:
        from simmim_deploy.serve.runtime import Runtime

        runtime = Runtime(bundle, runner, manifest=manifest, max_pixels=max_pixels)
    options = {k: v for k, v in cfg.__dict__.items() if k != "bundle"}
    app = create_app(str(bundle), runtime=runtime, **options)
    uvicorn.run(app, host=host, port=port, timeout_graceful_shutdown=graceful, log_level="info")
