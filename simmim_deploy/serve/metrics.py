"""Prometheus text exposition for the server, written by hand (no prometheus_client needed).

One :class:`ServerMetrics` per app (no module-level state); every update takes one lock, cheap
next to an inference. Format: https://prometheus.io/docs/instrumenting/exposition_formats/
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Histogram:
    """Cumulative-bucket histogram (Prometheus semantics: ``le`` = less than or equal)."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # last one is +Inf
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1

    def render(self, name: str, help_text: str) -> list[str]:
        lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        running = 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            lines.append(f'{name}_bucket{{le="{le}"}} {running}')
        lines += [f"{name}_sum {self.total:.6f}", f"{name}_count {self.n}"]
        return lines


class ServerMetrics:
    """Requests, errors, images, batch sizes, queue time and latency of one server process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.images = 0
        self.in_flight = 0
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.queue_seconds = Histogram(LATENCY_BUCKETS)
        self.inference_seconds = Histogram(LATENCY_BUCKETS)
        self.latency_seconds = Histogram(LATENCY_BUCKETS)

    def request_done(self, path: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(path, status)] += 1
            if path == "/v1/predict":
                self.latency_seconds.observe(seconds)

    def batch_done(self, size: int, queue_waits: list[float], seconds: float) -> None:
        with self._lock:
            self.batch_size.observe(size)
            self.inference_seconds.observe(seconds)
            self.images += size
            for wait in queue_waits:
                self.queue_seconds.observe(wait)

    def add_in_flight(self, delta: int) -> None:
        with self._lock:
            self.in_flight += delta

    def render(self) -> str:
        """The exposition text (``text/plain; version=0.0.4``)."""
        p = "simmim_serve"
        with self._lock:
            lines = [f"# HELP {p}_requests_total HTTP requests by path and status code.",
                     f"# TYPE {p}_requests_total counter"]  # fmt: skip
            for (path, status), count in sorted(self.requests.items()):
                lines.append(f'{p}_requests_total{{path="{path}",code="{status}"}} {count}')
            errors = sum(c for (_, s), c in self.requests.items() if s >= 400)
            lines += [
                f"# HELP {p}_errors_total HTTP responses with status >= 400.",
                f"# TYPE {p}_errors_total counter",
                f"{p}_errors_total {errors}",
                f"# HELP {p}_images_total Images run through the model.",
                f"# TYPE {p}_images_total counter",
                f"{p}_images_total {self.images}",
                f"# HELP {p}_in_flight_requests Predict requests being handled.",
                f"# TYPE {p}_in_flight_requests gauge",
                f"{p}_in_flight_requests {self.in_flight}",
            ]
            lines += self.batch_size.render(f"{p}_batch_size", "Images per inference batch.")
            lines += self.queue_seconds.render(
                f"{p}_queue_seconds", "Time an image waited for its batch."
            )
            lines += self.inference_seconds.render(
                f"{p}_inference_seconds", "Model time per batch."
            )
            lines += self.latency_seconds.render(
                f"{p}_request_latency_seconds", "End-to-end latency of /v1/predict."
            )
        return "\n".join(lines) + "\n"
