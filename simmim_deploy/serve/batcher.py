"""Dynamic batching: concurrent requests share one inference call.

Requests (from the asyncio event loop or any thread) enqueue single images; one inference thread
takes the first waiting image, then gathers more until ``max_batch`` images or ``max_wait_ms``
have passed, runs the model once and hands every caller its own output rows. Under load the
queue is already full when a batch is taken, so batches fill without waiting; when idle, a lone
request waits at most ``max_wait_ms``. The queue is bounded: when full, :class:`Overloaded` is
raised at once instead of letting latency grow without limit.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from simmim_deploy.serve.metrics import ServerMetrics

log = logging.getLogger(__name__)
Outputs = dict[str, np.ndarray]


class Overloaded(RuntimeError):
    """The batching queue is full."""


@dataclass
class _Job:
    array: np.ndarray
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.perf_counter)


_STOP = object()


class DynamicBatcher:
    """Gather single images into batches for ``infer`` on one dedicated thread.

    Args:
        infer: ``(B, 3, H, W)`` float32 -> outputs by name, each with ``B`` rows.
        max_batch: most images per inference call.
        max_wait_ms: how long the first image of a batch waits for company.
        max_queue: most images waiting; beyond it :meth:`submit` raises :class:`Overloaded`.
        metrics: where batch sizes and queue/inference times are recorded.
    """

    def __init__(
        self,
        infer: Callable[[np.ndarray], Outputs],
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        max_queue: int = 1024,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.infer = infer
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.metrics = metrics or ServerMetrics()
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._loop, name="inference", daemon=True)
        self._closing = False

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        """The inference thread is up and takes new images."""
        return self._thread.is_alive() and not self._closing

    def submit(self, array: np.ndarray) -> Future:
        """Queue one ``(3, H, W)`` image; the future resolves to its outputs (rows of 1)."""
        if self._closing or not self._thread.is_alive():
            raise Overloaded("the server is shutting down")
        job = _Job(array)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise Overloaded(f"more than {self._queue.maxsize} images waiting") from None
        return job.future

    async def run(self, arrays: list[np.ndarray]) -> list[Outputs]:
        """Await the outputs of several images (cancelling the wait cancels queued jobs)."""
        futures = [asyncio.wrap_future(self.submit(a)) for a in arrays]
        return list(await asyncio.gather(*futures))

    def close(self, timeout: float = 30.0) -> None:
        """Finish every queued image, then stop the thread."""
        self._closing = True
        if self._thread.is_alive():
            self._queue.put(_STOP, timeout=timeout)
            self._thread.join(timeout)

    def _take_batch(self) -> tuple[list[_Job], bool]:
        first = self._queue.get()
        if first is _STOP:
            return [], True
        jobs, deadline = [first], time.perf_counter() + self.max_wait
        while len(jobs) < self.max_batch:
            try:
                remaining = deadline - time.perf_counter()
                job = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if job is _STOP:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _loop(self) -> None:
        stop = False
        while not stop:
            jobs, stop = self._take_batch()
            # A caller that timed out cancelled its future: skip its image.
            jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]
            if jobs:
                self._run(jobs)

    def _run(self, jobs: list[_Job]) -> None:
        start = time.perf_counter()
        try:
            out = self.infer(np.stack([j.array for j in jobs]))
        except Exception as exc:  # noqa: BLE001 - every waiting caller gets the error
            log.exception("inference failed for a batch of %d", len(jobs))
            for job in jobs:
                job.future.set_exception(exc)
            return
        self.metrics.batch_done(
            len(jobs), [start - j.enqueued for j in jobs], time.perf_counter() - start
        )
        for i, job in enumerate(jobs):
            job.future.set_result({k: v[i : i + 1] for k, v in out.items()})
