"""Offline pipeline: decoding/preprocessing in threads, overlapped with inference.

A thread pool decodes and preprocesses images ahead of the consumer, at most ``prefetch``
images ahead (the bounded queue: memory stays flat on a million files). Inference runs on full
batches while the pool fills the next one; Pillow's decoders and ONNX Runtime both release the
GIL, so the two really overlap. A backend that executes several calls at once (``parallel``:
OpenVINO's throughput streams) gets that many batches in flight. Results come out in input
order; an image that fails to decode becomes an error record and never stops the run. The last
batch is simply smaller: backends take any batch size (see ``run_any_batch``).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from simmim_deploy.serve.runtime import Prepared, Runtime


@dataclass
class PipelineStats:
    """Where a run's time went: ``model_s`` summed over the batched inference + post-processing
    calls (``inflight`` of them at once at most), ``prepare_s`` summed over the decoding threads
    (decode + preprocess), ``prepared`` images."""

    model_s: float = 0.0
    prepare_s: float = 0.0
    prepared: int = 0
    inflight: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add_prepare(self, seconds: float) -> None:
        with self._lock:  # called from every decoding thread
            self.prepare_s += seconds
            self.prepared += 1

    def add_model(self, seconds: float) -> None:
        with self._lock:  # one call per batch, up to ``inflight`` at once
            self.model_s += seconds

    def summary(self, seconds: float, workers: int) -> dict[str, Any]:
        """``model_busy``: share of the run's wall time the model's ``inflight`` call slots were
        running (below ~0.9 the run waited for its input); ``inference_images_per_s``: the
        model's own speed during the run (below ``benchmark``'s model-only figure when decoding
        shares its cores); ``prepare_ms_per_image``: one decoding thread's time per image."""
        slots = seconds * self.inflight
        return {
            "model_busy": round(self.model_s / slots, 3) if slots > 0 else None,
            "inference_images_per_s": (
                round(self.prepared * self.inflight / self.model_s, 2) if self.model_s > 0 else None
            ),
            "inflight_batches": self.inflight,
            "prepare_ms_per_image": round(self.prepare_s / max(self.prepared, 1) * 1e3, 3),
            "decode_workers": workers,
        }


@dataclass(frozen=True)
class Item:
    """One source after decoding: ``prepared`` or ``error`` is set."""

    index: int
    source: str
    prepared: Prepared | None
    error: str | None


def safe_prepare(
    prepare: Callable[[str], Prepared], source: str, stats: PipelineStats | None = None
) -> tuple[Prepared | None, str | None]:
    start = time.perf_counter()
    try:
        return prepare(source), None
    except Exception as exc:  # noqa: BLE001 - one bad image must never stop the run
        return None, str(exc) or type(exc).__name__
    finally:
        if stats is not None:
            stats.add_prepare(time.perf_counter() - start)


def default_workers() -> int:
    """Decoding threads: leave one core to inference, at least one, at most 8."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def prepared_groups(
    sources: Iterable[str],
    prepare: Callable[[str], Prepared],
    batch_size: int,
    workers: int | None = None,
    prefetch: int | None = None,
    stats: PipelineStats | None = None,
) -> Iterator[list[Item]]:
    """Yield consecutive items, each group holding up to ``batch_size`` decoded images.

    Errors travel inside the group where they occur, so input order is kept. At most
    ``prefetch`` images (default ``2 * batch_size + workers``) are decoded ahead.
    """
    workers = workers or default_workers()
    prefetch = max(prefetch or 2 * batch_size + workers, 1)
    feed = enumerate(sources)
    pending: deque[tuple[int, str, Future]] = deque()
    pool = ThreadPoolExecutor(workers, thread_name_prefix="decode")

    def top_up() -> None:
        while len(pending) < prefetch:
            nxt = next(feed, None)
            if nxt is None:
                return
            index, source = nxt
            pending.append((index, source, pool.submit(safe_prepare, prepare, source, stats)))

    try:
        group: list[Item] = []
        ok = 0
        top_up()
        while pending:
            index, source, future = pending.popleft()
            top_up()
            prepared, error = future.result()
            group.append(Item(index, source, prepared, error))
            ok += prepared is not None
            if ok == batch_size:
                yield group
                group, ok = [], 0
        if group:
            yield group
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_pipeline(
    runtime: Runtime,
    sources: Iterable[str],
    batch_size: int,
    top_k: int = 5,
    conf: float = 0.25,
    workers: int | None = None,
    stats: PipelineStats | None = None,
) -> Iterator[tuple[Item, dict[str, Any]]]:
    """Predict every source; yields ``(item, record)`` in input order.

    ``record`` is ``{"path", "width", "height", "topk" | "boxes"}`` or ``{"path", "error"}``.
    A backend that runs several calls at once (``backend.parallel`` > 1: OpenVINO's throughput
    streams) gets that many batches in flight; results still come out in order. ``stats``,
    when given, accumulates where the time went.
    """
    inflight = max(1, int(getattr(runtime.backend, "parallel", 1)))
    if stats is not None:
        stats.inflight = inflight

    def records_of(group: list[Item]) -> list[dict[str, Any]]:
        start = time.perf_counter()
        records = group_records(runtime, group, top_k, conf)
        if stats is not None:
            stats.add_model(time.perf_counter() - start)
        return records

    groups = prepared_groups(sources, runtime.prepare, batch_size, workers, stats=stats)
    pending: deque[tuple[list[Item], Future]] = deque()
    with ThreadPoolExecutor(inflight, thread_name_prefix="infer") as pool:
        for group in groups:  # with inflight 1: submit, then wait for it at once
            pending.append((group, pool.submit(records_of, group)))
            while len(pending) >= inflight:
                done, future = pending.popleft()
                yield from zip(done, future.result(), strict=True)
        for done, future in pending:
            yield from zip(done, future.result(), strict=True)


def group_records(
    runtime: Runtime, group: list[Item], top_k: int = 5, conf: float = 0.25
) -> list[dict[str, Any]]:
    """One record per item, in order: the record format of every offline engine.

    ``{"path", "width", "height", "topk" | "boxes"}`` for a decoded image (one batched inference
    for the group), ``{"path", "error"}`` for one that failed to decode.
    """
    ok = [item for item in group if item.prepared is not None]
    results = iter(
        runtime.predict_prepared([i.prepared for i in ok], top_k, conf) if ok else []  # type: ignore[misc]
    )
    return [
        {"path": item.source, "error": item.error}
        if item.prepared is None
        else {"path": item.source, **next(results)}
        for item in group
    ]
