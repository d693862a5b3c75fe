"""Server metrics through ``prometheus_client`` (the ``serve`` extra), correct with many workers.

One :class:`ServerMetrics` per app, each with its own ``CollectorRegistry`` (no module-level
state, so several apps in one process never mix counts). With ``--workers N`` the processes
share nothing, so ``simmim-deploy serve`` runs ``prometheus_client``'s multiprocess mode: every
worker writes its samples to files in ``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary directory
per server run) and any worker's ``/metrics`` sums all of them, so a scrape sees the whole
server. See https://prometheus.github.io/client_python/multiprocess/
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any

from simmim_deploy.core.errors import UserError, require

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "simmim_serve"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServerMetrics:
    """Requests, images, unreadable images, batch sizes, queue wait and inference time.

    Multiprocess mode is on when ``PROMETHEUS_MULTIPROC_DIR`` is set before the process
    imports ``prometheus_client`` (the library reads it then); ``serve --workers N`` sets it.
    """

    def __init__(self) -> None:
        prom = require("prometheus_client", "serve", "server metrics")
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None
        self.registry = prom.CollectorRegistry()
        reg, p = self.registry, PREFIX
        self.requests = prom.Counter(
            f"{p}_requests", "HTTP requests by route and status code.", ["path", "code"],
            registry=reg,
        )  # fmt: skip
        self.images = prom.Counter(f"{p}_images", "Images run through the model.", registry=reg)
        self.image_errors = prom.Counter(
            f"{p}_image_errors", "Images of a request that could not be read.", registry=reg
        )
        self.in_flight = prom.Gauge(
            f"{p}_in_flight_requests", "Inference requests being handled.",
            registry=reg, multiprocess_mode="livesum",
        )  # fmt: skip
        self.batch_size = prom.Histogram(
            f"{p}_batch_size", "Images per inference batch.", buckets=BATCH_BUCKETS, registry=reg
        )
        self.queue_seconds = prom.Histogram(
            f"{p}_queue_seconds", "Time an image waited for its batch.",
            buckets=LATENCY_BUCKETS, registry=reg,
        )  # fmt: skip
        self.inference_seconds = prom.Histogram(
            f"{p}_inference_seconds", "Model time per batch.", buckets=LATENCY_BUCKETS,
            registry=reg,
        )  # fmt: skip
        self.latency_seconds = prom.Histogram(
            f"{p}_request_latency_seconds", "End-to-end latency of inference requests.",
            ["path"], buckets=LATENCY_BUCKETS, registry=reg,
        )  # fmt: skip

    def request_done(self, path: str, status: int, seconds: float, timed: bool) -> None:
        """Count one HTTP answer; ``timed``: also record its latency (inference routes)."""
        self.requests.labels(path=path, code=str(status)).inc()
        if timed:
            self.latency_seconds.labels(path=path).observe(seconds)

    def batch_done(self, size: int, queue_waits: list[float], seconds: float) -> None:
        """Record one inference batch of ``size`` images."""
        self.batch_size.observe(size)
        self.inference_seconds.observe(seconds)
        self.images.inc(size)
        for wait in queue_waits:
            self.queue_seconds.observe(wait)

    def unreadable(self, count: int) -> None:
        """Count images that failed to decode (they got an error record)."""
        if count:
            self.image_errors.inc(count)

    def add_in_flight(self, delta: int) -> None:
        self.in_flight.inc(delta)

    def render(self) -> tuple[bytes, str]:
        """The exposition text of every worker (multiprocess mode) or of this process."""
        prom = require("prometheus_client", "serve", "server metrics")
        registry: Any = self.registry
        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            registry = prom.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        return prom.generate_latest(registry), prom.CONTENT_TYPE_LATEST

    def close(self) -> None:
        """Drop this worker's live gauges from the shared files (multiprocess mode)."""
        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), path=self.multiprocess_dir)


@contextlib.contextmanager
def shared_metrics_dir() -> Iterator[str]:
    """Put the worker processes started inside the block in multiprocess mode.

    Uses ``PROMETHEUS_MULTIPROC_DIR`` when it is set (it must be an empty directory: the library
    needs a clean one per run), else a fresh temporary directory removed afterwards.
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        if not os.path.isdir(given) or os.listdir(given):
            raise UserError(
                f"{MULTIPROC_ENV}={given} must be an existing, empty directory "
                "(metrics of an earlier run would be counted again); empty it or unset it"
            )
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="simmim-serve-metrics-") as folder:
        os.environ[MULTIPROC_ENV] = folder
        try:
            yield folder
        finally:
            os.environ.pop(MULTIPROC_ENV, None)
