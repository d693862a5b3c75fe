"""`simmim-deploy serve`: the HTTP server (FastAPI + uvicorn) with dynamic batching."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from simmim_deploy.cli.options import config_command
from simmim_deploy.core.config import option, part_of
from simmim_deploy.core.errors import UserError
from simmim_deploy.serve.server import MAX_BODY_MB, ServeConfig

DOC = """Serve POST /v1/predict, the Open Inference Protocol v2 (/v2/...: tritonclient, KServe),
GET /healthz, GET /metrics and the OpenAPI docs at /docs.

Example: simmim-deploy serve runs/bundle --port 8000 --max-batch 32 --token-file token.txt
"""
LOCAL = ("127.0.0.1", "localhost", "::1")


@dataclasses.dataclass(frozen=True)
class ServeOptions(ServeConfig):
    """The app's :class:`ServeConfig` plus how the command runs the server."""

    host: str = option("127.0.0.1", "Interface to bind; 0.0.0.0 exposes the server.")
    port: int = option(8000, "TCP port.")
    workers: int = option(1, "Server processes, each with its own model.")
    token_file: str | None = option(
        None, "File holding a bearer token; requests without it get 401."
    )
    max_body_mb: float = option(float(MAX_BODY_MB), "Largest request body in MiB (413 above).")

    def app_config(self) -> ServeConfig:
        """The app's part, with the token read from ``token_file``."""
        token = None
        if self.token_file is not None:
            if not Path(self.token_file).is_file():
                raise UserError(f"--token-file {self.token_file} does not exist")
            token = Path(self.token_file).read_text(encoding="utf-8").strip()
        max_body_bytes = int(self.max_body_mb * 1024 * 1024)
        return part_of(self, ServeConfig, token=token, max_body_bytes=max_body_bytes)


def _run(opts: ServeOptions) -> None:
    from simmim_deploy.core.errors import require

    uvicorn = require("uvicorn", "serve", "the HTTP server")
    cfg = opts.app_config()
    if cfg.token is None and opts.host not in LOCAL:
        print(
            f"warning: serving on {opts.host} without --token-file: anyone can call it",
            file=sys.stderr,
        )
    # uvicorn first stops accepting, then waits this long for in-flight requests to finish.
    graceful = cfg.request_timeout_s + 5.0
    run = {"host": opts.host, "port": opts.port, "timeout_graceful_shutdown": graceful}
    if opts.workers > 1:
        _run_workers(uvicorn, cfg, opts.workers, run)
        return
    from simmim_deploy.cli.targets import open_target
    from simmim_deploy.serve.server import create_app

    runtime = None
    runner, manifest = open_target(cfg.bundle, cfg.backend, cfg.threads)
    if runner is not None:
        from simmim_deploy.serve.runtime import Runtime

        runtime = Runtime(cfg.bundle, runner, manifest=manifest, max_pixels=cfg.max_pixels)
    uvicorn.run(create_app(cfg, runtime=runtime), log_level="info", **run)


def _run_workers(uvicorn, cfg: ServeConfig, workers: int, run: dict) -> None:  # noqa: ANN001
    """Several server processes, each opening the bundle (not a checkpoint)."""
    import os

    from simmim_deploy.core.manifest import is_checkpoint, read_manifest
    from simmim_deploy.serve.metrics import shared_metrics_dir
    from simmim_deploy.serve.server import ENV_CONFIG, config_to_env

    if cfg.backend == "torch" or is_checkpoint(cfg.bundle):
        raise UserError("a checkpoint (--backend torch) is served with --workers 1 only")
    read_manifest(cfg.bundle)  # fail here, once, rather than in every worker
    os.environ[ENV_CONFIG] = config_to_env(cfg)
    with shared_metrics_dir():  # /metrics sums every worker (prometheus multiprocess mode)
        uvicorn.run(
            "simmim_deploy.serve.server:create_app_from_env", factory=True, workers=workers,
            log_level="info", **run,
        )  # fmt: skip


serve = config_command(ServeOptions, _run, DOC)
