"""What ``/v1/predict`` and the v2 ``infer`` routes share: decode each image, batch, answer.

An unreadable image never fails its neighbours: it becomes an ``{"error": ...}`` record and
the others are answered. Only a request in which no image could be read fails as a whole
(the first image's error and status).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import numpy as np

from simmim_deploy.serve.batcher import DynamicBatcher, Overloaded
from simmim_deploy.serve.http_input import ApiError, image_error_status
from simmim_deploy.serve.images import ImageError
from simmim_deploy.serve.metrics import ServerMetrics
from simmim_deploy.serve.runtime import Prepared, Runtime

T = TypeVar("T")


def prepare_each(runtime: Runtime, images: list[bytes]) -> list[Prepared | ImageError]:
    """Decode + preprocess every image; a failure is kept in its place (never raised)."""
    out: list[Prepared | ImageError] = []
    for data in images:
        try:
            out.append(runtime.prepare(data))
        except ImageError as exc:
            out.append(exc)
    return out


def raise_if_none_readable(names: list[str], prepared: list[Any], status: int | None) -> None:
    """Fail the request (4xx) when not one of its images could be read."""
    if prepared and all(isinstance(p, ImageError) for p in prepared):
        first = prepared[0]
        raise ApiError(status or image_error_status(first), f"{names[0]}: {first}")


async def run_batched(batcher: DynamicBatcher, arrays: list[np.ndarray]) -> list[dict[str, Any]]:
    """Outputs (rows of 1) for every ``(3, H, W)`` array, through the dynamic batcher."""
    if not arrays:
        return []
    try:
        return await batcher.run(arrays)
    except Overloaded as exc:
        raise ApiError(503, f"server busy: {exc}; retry later", {"Retry-After": "1"}) from None


async def predict_images(
    runtime: Runtime,
    batcher: DynamicBatcher,
    metrics: ServerMetrics,
    images: list[tuple[str, bytes]],
    top_k: int,
    conf: float,
    error_status: int | None = None,
) -> list[dict[str, Any]]:
    """One record per ``(name, encoded bytes)``, in order (``predict``'s records).

    Returns:
        ``{"path", "width", "height", "topk" | "boxes"}`` per readable image and
        ``{"path", "error"}`` per unreadable one.

    Raises:
        ApiError: no image readable (``error_status``, default 413/422 by the first error),
            queue full (503).
    """
    names = [name for name, _ in images]
    prepared = await asyncio.to_thread(prepare_each, runtime, [data for _, data in images])
    ok = [p for p in prepared if not isinstance(p, ImageError)]
    metrics.unreadable(len(prepared) - len(ok))
    raise_if_none_readable(names, prepared, error_status)
    outputs = iter(await run_batched(batcher, [p.array for p in ok]))
    records = []
    for name, prep in zip(names, prepared, strict=True):
        if isinstance(prep, ImageError):
            records.append({"path": name, "error": str(prep)})
            continue
        post = runtime.postprocess(next(outputs), [prep], top_k, conf)[0]
        records.append({"path": name, "width": prep.width, "height": prep.height, **post})
    return records


async def within(work: Awaitable[T], timeout_s: float, metrics: ServerMetrics) -> T:
    """Await ``work`` as one in-flight request; 504 past ``timeout_s``."""
    metrics.add_in_flight(1)
    try:
        return await asyncio.wait_for(work, timeout_s)
    except asyncio.TimeoutError:
        raise ApiError(504, f"no answer within {timeout_s} s") from None
    finally:
        metrics.add_in_flight(-1)
