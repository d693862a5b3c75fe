"""How a training run divided its data, read back where the split is needed again.

``train classify`` / ``train detect`` decide which images they hold out (a source's own ``val``
part, ``--val-data``, or a seeded ``--val-split`` share) and record the options in the
checkpoint's ``train_config``. Export calibrates on the training part and scores its gate on the
held-out part; it reads the recorded split back through :class:`DataSplit` instead of
re-deriving it with defaults (which, with another seed, would score on training images).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

# The key of the hold-out seed in each task's train_config (classify keeps it apart from the
# run seed so every seed shares one validation set).
_SEED_KEY = {"classification": "split_seed", "detection": "seed"}


@dataclasses.dataclass(frozen=True)
class DataSplit:
    """The split options a training run used.

    Attributes:
        task: ``classification`` or ``detection``.
        data: the ``--data`` value trained on.
        val_data: the ``--val-data`` value, or None.
        val_split: share held out of ``data`` when it has no validation part, or None.
        seed: seed of that hold-out.
    """

    task: str
    data: str
    val_data: str | None = None
    val_split: float | None = None
    seed: int = 0

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> DataSplit | None:
        """The split recorded in a checkpoint meta's ``train_config`` (None when absent)."""
        config = meta.get("train_config") or {}
        task = meta.get("task")
        if task not in _SEED_KEY or not config.get("data"):
            return None
        val_split = config.get("val_split")
        return cls(
            task=str(task),
            data=str(config["data"]),
            val_data=str(config["val_data"]) if config.get("val_data") else None,
            val_split=float(val_split) if val_split is not None else None,
            seed=int(config.get(_SEED_KEY[task]) or 0),
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> DataSplit | None:
        """Parse :meth:`to_dict` output (None stays None)."""
        if not values:
            return None
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in fields})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def covers(self, source: str) -> bool:
        """Whether ``source`` names the data this run trained on (paths compared resolved)."""
        return _normalise(source) == _normalise(self.data)


def _normalise(source: str) -> str:
    text = str(source)
    if text.startswith("builtin:"):
        return text
    prefix = ""
    for kind in ("yolo:", "voc:"):
        if text.startswith(kind):
            prefix, text = kind, text[len(kind) :]
    return prefix + str(Path(text).expanduser().resolve())
