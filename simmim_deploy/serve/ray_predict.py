"""``predict --engine ray``: the same records as local ``predict``, computed on a Ray cluster.

Ray Data runs the offline pipeline (Ray Data docs, "Offline batch inference"):

1. the driver lists the sources (``ray_sources.list_sources``: local paths exactly as local
   ``predict`` lists them, or any ``pyarrow.fs`` URI) into a dataset of ``(index, path)`` rows;
2. each file is read and decoded with the runtime's own ``prepare_image``; an unreadable file
   becomes an error row, not a failed task (``ray.data.read_binary_files`` is not used: one
   missing or unreadable file fails the whole read there, and a record per input is the
   contract). Where (``RayOptions.decode_in``, ``ray_plan.plan_pool``): in separate Ray tasks
   (``map_batches`` with a function) that scale apart from inference, or inside the inference
   actors (a thread pool, as local ``predict`` decodes), which on one node saves the tasks'
   worker processes, their CPU reservations and a copy of every decoded image through the
   object store;
3. ``map_batches`` with a callable class (an ``ActorPoolStrategy`` pool) runs inference: each
   actor opens one torch-free runtime with ``predict.open_runtime`` (the backend selection of
   local ``predict``, inference threads set to the actor's share of the node's CPUs so actors
   do not oversubscribe it) and turns its batch into records with ``pipeline.group_records``,
   the one producer of local ``predict``'s records;
4. the driver streams the records back in input order into a JSON lines or Parquet file, written
   atomically, and checks that every input index arrived exactly once.

Ray Data retries a map task whose worker died and restarts a dead actor and retries its task
(its defaults: ``max_retries=-1`` for tasks, ``max_restarts=-1`` and ``max_task_retries=-1`` for
pool actors); the index check proves no image was lost or written twice.
``import ray`` happens inside the functions: the edge runtime imports without it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from simmim_deploy.core.boxes import Letterbox
from simmim_deploy.core.errors import UserError, require
from simmim_deploy.core.manifest import read_manifest
from simmim_deploy.serve.images import DEFAULT_MAX_PIXELS, FAST_DECODE
from simmim_deploy.serve.pipeline import Item, group_records, safe_prepare
from simmim_deploy.serve.predict import PredictConfig, Progress, open_runtime
from simmim_deploy.serve.preprocess import PreprocessSpec
from simmim_deploy.serve.ray_options import RayOptions
from simmim_deploy.serve.ray_output import write_in_order
from simmim_deploy.serve.ray_plan import DECODE_CPUS, PoolPlan, plan_pool
from simmim_deploy.serve.ray_sources import Reader, list_sources
from simmim_deploy.serve.runtime import Prepared, prepare_image

OBJECT_STORE_MAX = 2 * 1024**3  # a local instance needs little: batches stream through it
# Batches per input block: a decoding task's unit of work and of retry. Small blocks keep the
# pipeline streaming (inference starts after the first block) and a retried task cheap. Actors
# that decode take one batch per block (a block of paths is tiny; records stream per batch).
BATCHES_PER_BLOCK = 2
MAX_BLOCKS = 20_000  # past this, per-block scheduling overhead outweighs finer granularity


def _object_store_bytes() -> int:
    """At most 2 GiB and half of the free shared memory (Ray's plasma store lives in /dev/shm)."""
    try:
        stat = os.statvfs("/dev/shm")
        free = stat.f_bavail * stat.f_frsize
    except OSError:
        return OBJECT_STORE_MAX // 4
    return int(max(100 * 1024**2, min(OBJECT_STORE_MAX, free // 2)))


def connect(address: str | None) -> tuple[Any, bool]:
    """Join ``address`` / ``$RAY_ADDRESS``, reuse a running session, or start a local instance.

    Returns:
        ``(ray, connected)``; ``connected`` is True when this call started a local instance or
        joined a cluster: the caller then calls ``ray.shutdown()``, which stops a local instance
        and only disconnects from a cluster.
    """
    address = address or os.environ.get("RAY_ADDRESS") or None
    if not address and "ray" not in sys.modules:
        # A single-node Ray: every server then binds 127.0.0.1, not all interfaces (Ray reads
        # this at import; without it ray.init turns 127.0.0.1 into the routable address).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = require("ray", "ray", "predict --engine ray")
    if ray.is_initialized():
        return ray, False
    quiet = {"logging_level": "WARNING", "log_to_driver": True}
    if address:
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(f"cannot join the Ray cluster at {address}: {exc}") from None
        return ray, True
    # Ray renices every worker process by +15 (its ``worker_niceness`` setting, so that a
    # cluster's driver keeps priority); here the actors do the job's work, so they run at the
    # command's own priority, as local predict does (beside nice-19 jobs, +15 workers made a job
    # up to 9x slower). Read by the processes ray.init starts; a cluster keeps its own setting.
    os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(
        address="local",
        num_cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        include_dashboard=False,
        object_store_memory=_object_store_bytes(),
        **quiet,
    )
    return ray, True


def _encode_letterbox(lb: Letterbox | None) -> list[float]:
    if lb is None:
        return [np.nan] * 7
    return [lb.scale, *lb.pad, *lb.resized, *lb.original]


def _decode_letterbox(row: np.ndarray) -> Letterbox | None:
    if np.isnan(row[0]):
        return None
    v = [int(x) for x in row[1:]]
    return Letterbox(float(row[0]), (v[0], v[1]), (v[2], v[3]), (v[4], v[5]))


def decode_batch(
    batch: dict[str, np.ndarray],
    spec: PreprocessSpec,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    fast_decode: bool = FAST_DECODE,
) -> dict[str, np.ndarray]:
    """A Ray task: read, decode and preprocess each path of the batch.

    Args:
        batch: ``index (B,)`` and ``path (B,)`` columns.
        spec: the bundle's preprocessing.
        max_pixels: the decompression-bomb limit of local ``predict``.
        fast_decode: ``predict --fast-decode`` (see ``prepare_image``).

    Returns:
        The input columns plus ``image (B, 3, H, W)`` float32 (zeros where decoding failed),
        ``error (B,)`` ("" when decoded), ``width``/``height (B,)`` and ``letterbox (B, 7)``.
    """
    read = Reader()
    paths = [str(p) for p in batch["path"]]
    h, w = spec.input_hw
    images = np.zeros((len(paths), 3, h, w), np.float32)
    sizes = np.zeros((len(paths), 2), np.int64)
    boxes = np.full((len(paths), 7), np.nan)
    errors = []
    for i, path in enumerate(paths):
        prepared, error = safe_prepare(
            lambda p: prepare_image(read(p), spec, max_pixels, fast_decode), path
        )
        errors.append(error or "")
        if prepared is not None:
            images[i] = prepared.array
            sizes[i] = prepared.width, prepared.height
            boxes[i] = _encode_letterbox(prepared.letterbox)
    return {
        "index": np.asarray(batch["index"], np.int64),
        "path": np.asarray(paths, dtype=object),
        "error": np.asarray(errors, dtype=object),
        "image": images,
        "width": sizes[:, 0],
        "height": sizes[:, 1],
        "letterbox": boxes,
    }


def _item(index: Any, path: Any, error: Any, image: np.ndarray, width: Any, height: Any,
          letterbox: np.ndarray) -> Item:  # fmt: skip
    """One decoded row back as the pipeline's :class:`Item`."""
    if error:
        return Item(int(index), str(path), None, str(error))
    prepared = Prepared(image, int(width), int(height), _decode_letterbox(letterbox))
    return Item(int(index), str(path), prepared, None)


class Predictor:
    """A Ray actor: one runtime, opened once, turning batches into records.

    Args:
        cfg: the run's options (``threads``: this actor's inference threads).
        decoders: 0 when batches arrive decoded (by :func:`decode_batch` tasks); else ``(index,
            path)`` batches are decoded here by this many threads, while another call holds the
            runtime (inference runs one batch at a time).
    """

    def __init__(self, cfg: PredictConfig, decoders: int = 0) -> None:
        import ray

        self.cfg = cfg
        self.runtime = open_runtime(cfg)
        self.actor_id = ray.get_runtime_context().get_actor_id() or f"pid-{os.getpid()}"
        self.described = json.dumps(self.runtime.describe())
        self.read = Reader()
        self.decoders = ThreadPoolExecutor(decoders, "decode") if decoders else None
        self.infer_lock = threading.Lock()

    def _prepare(self, path: str) -> tuple[Prepared | None, str | None]:
        return safe_prepare(lambda p: self.runtime.prepare(self.read(p)), path)

    def _items(self, batch: dict[str, np.ndarray]) -> list[Item]:
        if self.decoders is None:
            columns = ("index", "path", "error", "image", "width", "height", "letterbox")
            return [_item(*row) for row in zip(*(batch[c] for c in columns), strict=True)]
        paths = [str(p) for p in batch["path"]]
        done = self.decoders.map(self._prepare, paths)
        rows = zip(batch["index"], paths, done, strict=True)
        return [Item(int(i), path, *got) for i, path, got in rows]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = self._items(batch)
        with self.infer_lock:
            records = group_records(self.runtime, items, self.cfg.top_k, self.cfg.score_thresh)
        n = len(records)
        return {
            "index": np.asarray(batch["index"], np.int64),
            "record": np.asarray([json.dumps(r) for r in records], dtype=object),
            "actor": np.asarray([self.actor_id] * n, dtype=object),
            "runtime": np.asarray([self.described] + [""] * (n - 1), dtype=object),
        }


def build_dataset(ray: Any, cfg: PredictConfig, opts: RayOptions, paths: list[str],
                  predictor: type = Predictor) -> tuple[Any, PoolPlan]:  # fmt: skip
    """The lazy dataset of records: ``(index, path)`` -> [decode tasks] -> inference actors."""
    plan = plan_pool(ray, cfg, opts)
    items = [{"index": i, "path": p} for i, p in enumerate(paths)]
    per_block = (1 if plan.decode_in == "actors" else BATCHES_PER_BLOCK) * cfg.batch_size
    blocks = max(1, min(-(-len(paths) // per_block), MAX_BLOCKS))
    rows = ray.data.from_items(items, override_num_blocks=blocks)
    if plan.decode_in == "tasks":
        rows = rows.map_batches(
            decode_batch,
            fn_kwargs={
                "spec": PreprocessSpec.from_manifest(read_manifest(cfg.bundle)),
                "fast_decode": cfg.fast_decode,
            },
            batch_size=cfg.batch_size,
            batch_format="numpy",
            num_cpus=DECODE_CPUS,
            compute=ray.data.TaskPoolStrategy(size=cfg.workers) if cfg.workers else None,
        )
    records = rows.map_batches(
        predictor,
        fn_constructor_kwargs={
            "cfg": dataclasses.replace(cfg, threads=plan.threads),
            "decoders": plan.decoders,
        },  # fmt: skip
        batch_size=cfg.batch_size,
        batch_format="numpy",
        compute=plan.pool,
        num_cpus=plan.cpus_per_actor,
        num_gpus=opts.gpus_per_actor or None,
    )
    return records, plan


def run_ray_predict(
    cfg: PredictConfig,
    opts: RayOptions,
    predictor: type = Predictor,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run ``predict`` on Ray; the summary of local ``predict`` plus ``actors`` and ``ray``.

    Args:
        cfg: the options shared with local ``predict`` (``workers``: at most this many decoding
            tasks at a time, 0 for Ray's choice; ``save_vis`` is not supported).
        opts: cluster address and actor pool.
        predictor: the actor class (a subclass of :class:`Predictor`).
        progress: ``progress(done, total)`` after each record written, as local ``predict``.

    Returns:
        ``{"images", "ok", "errors", "seconds", "images_per_s", "runtime", "out", "config",
        "engine", "actors", "startup_s", "first_record_s", "checked", "ray"}``, plus
        ``"results"`` when ``cfg.out`` is None.

    Raises:
        UserError: bad options or sources, or when an input index did not come back (nothing
            is written then).
    """
    if cfg.save_vis:
        raise UserError("--save-vis needs the local engine (drop --engine ray)")
    if cfg.backend == "torch":
        raise UserError("--engine ray runs exported bundles: export first, or use --backend ort")
    task = read_manifest(cfg.bundle)["task"]  # a bad bundle: one line here, no actor traceback
    paths = list_sources(cfg.sources)
    start = time.perf_counter()
    ray, started = connect(opts.address)
    try:
        startup = time.perf_counter() - start
        records, plan = build_dataset(ray, cfg, opts, paths, predictor)
        got = write_in_order(records, cfg.out, task, len(paths), progress)
        resources = ray.cluster_resources()
        gcs = ray.get_runtime_context().gcs_address
    finally:
        if started:
            ray.shutdown()
    summary: dict[str, Any] = {
        "images": len(paths),
        "ok": len(paths) - got["errors"],
        "errors": got["errors"],
        "seconds": round(got["seconds"], 4),
        "images_per_s": round(len(paths) / got["seconds"], 2) if got["seconds"] > 0 else None,
        "runtime": got["runtime"],
        "out": cfg.out,
        "config": {**asdict(cfg), **{f"ray_{k}": v for k, v in asdict(opts).items()}},
        "engine": "ray",
        "actors": len(got["actors"]),
        "startup_s": round(startup, 3),
        "first_record_s": round(got["first"] or 0.0, 3),  # actors start, first batch decoded
        "checked": {"inputs": len(paths), "records": len(paths), "repeats_dropped": got["repeats"]},
        "ray": {"connected_here": started, "gcs_address": gcs, "cpus": resources.get("CPU"),
                "gpus": resources.get("GPU", 0), **plan.describe()},
    }  # fmt: skip
    if cfg.out is None:
        summary["results"] = got["results"]
    return summary


def out_path(out: str | Path | None) -> str | None:
    """``--out``: a ``.jsonl``/``.parquet`` file, or a folder (``FOLDER/predictions.jsonl``)."""
    if out is None:
        return None
    text = str(out)
    if text.endswith(("/", os.sep)) or Path(text).is_dir():
        return str(Path(text) / "predictions.jsonl")
    return text
