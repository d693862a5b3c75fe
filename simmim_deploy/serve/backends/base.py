"""The one small interface every inference backend implements, and batch-size plumbing."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Backend(Protocol):
    """An inference engine behind the runtime (ONNX Runtime, TensorRT, PyTorch, ...).

    Structural (a ``Protocol``): the PyTorch runner outside ``serve/`` satisfies it without
    importing this module. Optional attributes, read with ``getattr``: ``max_batch`` (see
    :func:`max_batch_of`) and ``parallel``, how many :meth:`run` calls the backend executes at
    once from different threads (OpenVINO's throughput streams; 1 when absent), which offline
    ``predict`` keeps in flight.
    """

    @property
    def input_shape(self) -> tuple[int | None, int, int, int]:
        """``(batch, 3, H, W)``; ``batch`` is None when dynamic, an int when the file fixes it."""
        ...

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run ``(B, 3, H, W)`` float32 and return every output by name, batch first."""
        ...

    def describe(self) -> dict[str, Any]:
        """What actually runs: library, version, file, precision, device/providers."""
        ...


def max_batch_of(backend: Backend) -> int | None:
    """Largest batch the backend accepts in one call (None: unbounded)."""
    limit = getattr(backend, "max_batch", None)
    fixed = backend.input_shape[0]
    return fixed if fixed is not None else limit


def run_any_batch(backend: Backend, batch: np.ndarray) -> dict[str, np.ndarray]:
    """Run a batch of any size on any backend, without recompiling.

    A file with a fixed batch ``N`` gets the batch split into chunks of ``N`` and the last chunk
    padded by repeating its final image (outputs of the padding rows are dropped); a bounded
    dynamic profile (TensorRT ``max``) gets the batch split. A dynamic backend runs it as is.

    Args:
        backend: any :class:`Backend`.
        batch: ``(B, 3, H, W)`` float32, ``B >= 1``.

    Returns:
        Outputs by name, each with ``B`` rows.
    """
    fixed = backend.input_shape[0]
    limit = max_batch_of(backend)
    n = batch.shape[0]
    if limit is None or (n <= limit and (fixed is None or n == fixed)):
        return backend.run(batch)
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, n, limit):
        chunk = batch[start : start + limit]
        real = chunk.shape[0]
        if fixed is not None and real < fixed:
            pad = np.repeat(chunk[-1:], fixed - real, axis=0)
            chunk = np.concatenate([chunk, pad], axis=0)
        out = backend.run(np.ascontiguousarray(chunk))
        parts.append({k: v[:real] for k, v in out.items()})
    return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}
