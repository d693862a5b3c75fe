"""``--backend auto`` on a CPU: the fastest verified backend and artefact for this machine.

Which file is fastest depends on the CPU (INT8 dot-product instructions, bf16) and the library
versions, so it is measured, not guessed. The candidates are the (backend, artefact) pairs whose
outputs passed the export gate: ONNX Runtime CPU and, when installed, OpenVINO at this CPU's
inference precision, on each artefact whose manifest entry lists that runtime in ``verified_on``
(OpenVINO's bf16 and INT8 numbers differ from ONNX Runtime's, so it is gated on its own). On first
use each runs a few interleaved rounds at the bundle's ``opt`` batch; the median time per call
ranks them. The timings are cached per machine and bundle under
``$XDG_CACHE_HOME/simmim-deploy/auto`` (default ``~/.cache``), keyed by the artefacts' sha256,
the CPU model and ISA flags, the library versions, the thread count and the batch, so a new CPU,
a new library or a re-exported bundle measures again. The choice is a pure function of the
timings (:func:`choose`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from simmim_deploy.core.atomic import atomic_write_text
from simmim_deploy.core.cpu import cpu_info
from simmim_deploy.core.environment import package_versions
from simmim_deploy.core.errors import UserError
from simmim_deploy.serve.backends.base import Backend, run_any_batch

CACHE_VERSION = 1
CPU_BACKENDS = ("ort-cpu", "openvino")
ROUNDS = 3  # timed calls per candidate, interleaved across candidates
WARMUP = 1


@dataclasses.dataclass(frozen=True)
class Choice:
    """What ``auto`` chose and the timings it chose from.

    Attributes:
        label: ``backend/precision`` of the fastest candidate, e.g. ``openvino/int8``.
        images_per_s: label -> images/s at ``batch`` (median of the timed rounds).
        batch: images per call measured.
        cache: the cache file.
        cached: True when read from the cache (nothing measured this time).
    """

    label: str
    images_per_s: dict[str, float]
    batch: int
    cache: Path
    cached: bool

    @property
    def backend(self) -> str:
        return self.label.split("/", 1)[0]

    @property
    def precision(self) -> str:
        return self.label.split("/", 1)[1]

    def line(self) -> str:
        """One line: the choice, why (every timing) and where the timings come from."""
        if not self.images_per_s:
            return f"backend auto: {self.label} (the only verified CPU candidate; nothing measured)"
        ranked = sorted(self.images_per_s.items(), key=lambda kv: (-kv[1], kv[0]))
        table = " | ".join(f"{k} {v:.1f}" for k, v in ranked)
        how = f"cached in {self.cache}" if self.cached else f"measured now, cached in {self.cache}"
        return f"backend auto: {self.label} (img/s at batch {self.batch}: {table}; {how})"


def choose(images_per_s: dict[str, float]) -> str:
    """The fastest label; ties go to the alphabetically first (deterministic)."""
    if not images_per_s:
        raise UserError("backend auto: no verified CPU artefact could be opened")
    return min(images_per_s, key=lambda k: (-images_per_s[k], k))


def _runtime(backend: str) -> str | None:
    """The ``verified_on`` key a backend's outputs are gated under here (None: not installed)."""
    if backend != "openvino":
        return "onnxruntime"
    if importlib.util.find_spec("openvino") is None:
        return None
    from simmim_deploy.serve.backends.openvino import default_inference_precision, runtime_key

    return runtime_key(default_inference_precision())


def candidates(manifest: dict[str, Any], precision: str | None = None) -> list[str]:
    """``backend/precision`` labels: each verified ONNX artefact on each installed backend whose
    outputs passed the gate for it (``verified_on``; OpenVINO at this CPU's inference precision).
    """
    from simmim_deploy.serve.backends import runs_file

    arts = manifest["artefacts"]
    keys = [
        k
        for k, a in arts.items()
        if any(runs_file(b, str(a.get("file", ""))) for b in CPU_BACKENDS)
        and a.get("verified") is True
    ]
    if precision is not None:
        if precision not in keys:
            raise UserError(
                f"backend auto: the bundle has no verified {precision!r} ONNX artefact "
                f"(verified: {keys})"
            )
        keys = [precision]
    labels = []
    for backend in CPU_BACKENDS:
        runtime = _runtime(backend)
        for k in keys:
            # Bundles written before verified_on existed were gated on ONNX Runtime only.
            gated = arts[k].get("verified_on", ["onnxruntime"])
            if runtime is not None and runtime in gated and runs_file(backend, arts[k]["file"]):
                labels.append(f"{backend}/{k}")
    return labels


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/simmim-deploy/auto`` (default ``~/.cache/simmim-deploy/auto``)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "simmim-deploy" / "auto"


def cache_key(manifest: dict[str, Any], labels: list[str], threads: int | None, batch: int) -> str:
    """Hash of everything the timings depend on (artefacts, CPU, libraries, threads, batch)."""
    arts = manifest["artefacts"]
    facts = {
        "cache_version": CACHE_VERSION,
        "artefacts": {
            k: [a.get("sha256"), a.get("weights_sha256")] for k, a in sorted(arts.items())
        },
        "candidates": sorted(labels),
        "cpu": cpu_info().to_dict(),
        "versions": package_versions(("onnxruntime", "openvino", "numpy", "simmim-deploy")),
        "threads": threads,
        "batch": batch,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:20]


def _time_call(backend: Backend, x: np.ndarray) -> float:
    start = time.perf_counter()
    run_any_batch(backend, x)
    return time.perf_counter() - start


def measure(
    opened: dict[str, Backend], batch: int, shape: tuple[int, int, int], rounds: int = ROUNDS
) -> dict[str, float]:
    """images/s per label: warm-up, then ``rounds`` calls each, interleaved, median time."""
    rng = np.random.default_rng(0)  # a timing input only: speed does not depend on pixel values
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    for backend in opened.values():
        for _ in range(WARMUP):
            run_any_batch(backend, x)
    times: dict[str, list[float]] = {label: [] for label in opened}
    for _ in range(rounds):
        for label, backend in opened.items():
            times[label].append(_time_call(backend, x))
    return {k: round(batch / float(np.median(v)), 2) for k, v in times.items()}


def _read_cache(path: Path, labels: list[str]) -> dict[str, float] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        timings = {str(k): float(v) for k, v in data["images_per_s"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # missing or unreadable: measure again
    return timings if timings and set(timings) <= set(labels) else None


def choose_backend(
    manifest: dict[str, Any],
    open_one: Any,
    precision: str | None = None,
    threads: int | None = None,
    refresh: bool = False,
) -> tuple[Backend, Choice]:
    """Open the fastest verified CPU candidate (measured once per machine and bundle).

    Args:
        manifest: the bundle's manifest.
        open_one: ``open_one(backend, precision) -> Backend`` (``open_backend`` by name).
        precision: restrict to this artefact (None: every verified one).
        threads: inference threads, passed to every candidate.
        refresh: measure again even when cached timings exist.

    Returns:
        The opened backend and the :class:`Choice` (its :meth:`Choice.line` says why).
    """
    labels = candidates(manifest, precision)
    batch = int((manifest.get("batch") or {}).get("opt", 8))
    path = cache_dir() / f"{cache_key(manifest, labels, threads, batch)}.json"
    if len(labels) == 1:  # nothing to choose between: no measurement, no cache
        choice = Choice(labels[0], {}, batch, path, cached=False)
        return open_one(choice.backend, choice.precision), choice
    timings = None if refresh else _read_cache(path, labels)
    if timings is not None:
        choice = Choice(choose(timings), timings, batch, path, cached=True)
        return open_one(choice.backend, choice.precision), choice
    opened: dict[str, Backend] = {}
    skipped: dict[str, str] = {}
    for label in labels:
        name, prec = label.split("/", 1)
        try:
            opened[label] = open_one(name, prec)
        except UserError as exc:  # e.g. a graph this library cannot compile
            skipped[label] = str(exc)
    shape = next(iter(opened.values())).input_shape[1:] if opened else (3, 224, 224)
    timings = measure(opened, batch, shape)  # type: ignore[arg-type]
    record = {
        "images_per_s": timings,
        "batch": batch,
        "skipped": skipped,
        "cpu": cpu_info().to_dict(),
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    choice = Choice(choose(timings), timings, batch, path, cached=False)
    for label, why in skipped.items():
        print(f"backend auto: skipped {label}: {why}", file=sys.stderr)
    return opened[choice.label], choice
