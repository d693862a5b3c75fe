"""How ``predict --engine ray`` lays its work on the cluster: where images are decoded, the actor
pool, CPUs and inference threads per actor (no ray import here: the caller passes the module).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simmim_deploy.core.errors import UserError
from simmim_deploy.serve.predict import PredictConfig
from simmim_deploy.serve.ray_options import RayOptions

# CPUs a decoding task reserves: decoding a batch is short, single-threaded and often waits on
# storage, so two per core keep the cores busy. A reservation unlike the actors' also keeps Ray
# Data from fusing decoding into the inference actors (which would serialise the two).
DECODE_CPUS = 0.5
# Batches an actor that decodes works on at once (Ray Data threads): one decodes while the other
# holds the runtime, the overlap local predict gets from its decoding threads.
CALLS_PER_ACTOR = 2


@dataclass(frozen=True)
class PoolPlan:
    """How the run uses the cluster (see :func:`plan_pool`)."""

    decode_in: str  # "actors" or "tasks"
    cpus_per_actor: float
    threads: int | None  # inference threads per actor (None: the backend's default, all cores)
    decoders: int  # decoding threads per actor (0: decoding tasks)
    pool: Any  # the ActorPoolStrategy

    def describe(self) -> dict[str, Any]:
        return {"decode_in": self.decode_in, "cpus_per_actor": self.cpus_per_actor,
                "inference_threads": self.threads or "default",
                "decode_threads": self.decoders}  # fmt: skip


def _node_cpus(ray: Any) -> tuple[int, float]:
    """Alive nodes and the CPUs of the largest one."""
    alive = [n for n in ray.nodes() if n.get("Alive")]
    return len(alive), max((float(n["Resources"].get("CPU", 0)) for n in alive), default=1.0)


def plan_pool(ray: Any, cfg: PredictConfig, opts: RayOptions) -> PoolPlan:
    """Where decoding runs, CPUs and threads per actor, and the actor pool.

    ``decode_in="auto"`` decodes inside the actors on a one-node cluster without GPU actors
    (nothing to scale apart there, and it saves a copy of every image through the object store)
    and in Ray tasks otherwise (CPU nodes decode for GPU actors; decoding scales across nodes).
    A fixed CPU pool splits the CPUs among the actors (less half a CPU for the decoding tasks);
    each actor then runs as many inference threads as it holds CPUs, the backend's default (all
    cores, as local ``predict``) when it holds a whole node. ``--threads`` overrides.
    """
    cluster = ray.cluster_resources()
    cpus = float(cluster.get("CPU", 1.0))
    nodes, node_cpus = _node_cpus(ray)
    decode_in = opts.decode_in
    if decode_in == "auto":
        decode_in = "actors" if nodes == 1 and opts.gpus_per_actor == 0 else "tasks"
    room = cpus - (DECODE_CPUS if decode_in == "tasks" else 0.0)
    if opts.gpus_per_actor > 0:
        fit = int(float(cluster.get("GPU", 0.0)) // opts.gpus_per_actor)
        if fit < 1:
            raise UserError(
                f"--gpus-per-actor {opts.gpus_per_actor}: the Ray cluster has "
                f"{cluster.get('GPU', 0)} GPUs"
            )
        per_actor = 1.0
    elif opts.actors:
        per_actor = max(0.25, min(node_cpus, room / opts.actors))
        if decode_in == "tasks" and cfg.threads:
            per_actor = min(per_actor, float(cfg.threads))
    else:  # autoscaling: one CPU (or --threads) per actor
        per_actor = min(node_cpus, float(cfg.threads or 1))
    fit = fit if opts.gpus_per_actor > 0 else max(1, int(room // per_actor))
    threads = cfg.threads
    if threads is None and opts.gpus_per_actor == 0 and per_actor < node_cpus:
        threads = max(1, int(per_actor))
    decoders = 0
    if decode_in == "actors":  # as local predict: one thread per spare CPU, at least one
        decoders = cfg.workers or max(1, int(per_actor) - 1)
    size = {"size": opts.actors} if opts.actors else {"min_size": 1, "max_size": fit}
    if decode_in == "actors":
        size.update(max_concurrent_calls_per_actor=CALLS_PER_ACTOR,
                    enable_true_multi_threading=True)  # fmt: skip
    pool = ray.data.ActorPoolStrategy(**size)
    return PoolPlan(decode_in, per_actor, threads, decoders, pool)
