"""Options of ``predict --engine ray`` (kept apart from the engine so ``--help`` needs no numpy)."""

from __future__ import annotations

from dataclasses import dataclass

from simmim_deploy.core.config import option
from simmim_deploy.core.errors import UserError

DECODE_IN = ("auto", "actors", "tasks")


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide ``predict --engine ray`` runs (validated on construction)."""

    address: str | None = option(
        None,
        "Ray cluster to join (host:port or ray://host:10001); default $RAY_ADDRESS, else a "
        "local Ray instance on 127.0.0.1.",
        flag="--ray-address",
    )
    actors: int = option(
        0, "Inference actors, each holding one runtime (0: autoscale from 1 to what fits)."
    )
    gpus_per_actor: float = option(0.0, "GPUs reserved per inference actor (e.g. 1).")
    decode_in: str = option(
        "auto",
        "Where images are decoded: actors (inside each inference actor, no image copies), tasks "
        "(separate Ray tasks, scaled apart from inference), auto (actors on a one-node cluster "
        "without GPU actors, else tasks).",
        flag="--decode-in",
    )

    def __post_init__(self) -> None:
        if self.actors < 0:
            raise UserError(f"--actors must be >= 0, got {self.actors}")
        if self.gpus_per_actor < 0:
            raise UserError(f"--gpus-per-actor must be >= 0, got {self.gpus_per_actor}")
        if self.decode_in not in DECODE_IN:
            raise UserError(
                f"--decode-in must be one of {', '.join(DECODE_IN)}, got {self.decode_in!r}"
            )
