"""Resumable training checkpoints: ``<out>/checkpoints/last.pt``.

The file is a plain dict that loads with ``torch.load(..., weights_only=True)`` (no pickled code):

- ``model``: the unwrapped model's state dict (no ``module.`` / ``_orig_mod.`` prefixes).
- ``optimizer``, ``scheduler``, ``scaler``: their state dicts (``scaler`` empty when unused).
- ``progress``: ``{"epoch", "step_in_epoch", "global_step", "images_seen", "world_size"}``;
  ``epoch`` is the epoch in progress (0-based) and ``step_in_epoch`` the optimizer steps already
  done in it, so the data order resumes mid-epoch exactly.
- ``rng``: one entry per rank of python/numpy/torch(/cuda) generator states as tensors and lists.
- ``meta``: caller-supplied plain values (model name, resolved config, ...).
- ``format``: ``"simmim-deploy/train-state/1"``.

Writes are atomic (temporary file, then rename): a ``kill -9`` at any moment leaves either the
previous checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import hashlib
import random
from math import inf
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simmim_deploy.core.atomic import atomic_path
from simmim_deploy.core.errors import UserError

FORMAT = "simmim-deploy/train-state/1"
CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"  # the fine-tuned weights export and evaluate read


def last_checkpoint_path(out_dir: str | Path) -> Path:
    """``<out_dir>/checkpoints/last.pt``."""
    return Path(out_dir) / CHECKPOINT_DIR / LAST


def check_run_folder(out_dir: str | Path, resume: bool) -> None:
    """Refuse to start a fresh run in a folder that already holds one (the one rule).

    Raises:
        UserError: ``out_dir`` holds ``checkpoints/last.pt`` and ``resume`` is False.
    """
    if last_checkpoint_path(out_dir).is_file() and not resume:
        raise UserError(
            f"{out_dir} already holds a run ({CHECKPOINT_DIR}/{LAST}): pass --resume to "
            "continue it or choose another --out"
        )


def link_last(out_dir: str | Path) -> None:
    """``<out_dir>/last.pt`` -> ``checkpoints/last.pt`` (relative, so the run folder can move)."""
    link = Path(out_dir) / LAST
    if not link.is_symlink() and not link.exists():
        link.symlink_to(Path(CHECKPOINT_DIR) / LAST)


class BestCheckpoint:
    """``<out_dir>/best.pt``: the weights of the best validation score so far.

    The file is ``{"model", "meta", "metrics"}`` (the fine-tuned checkpoint format that export
    and ``evaluate`` read), written atomically. On resume the best score is read back from it.

    Args:
        path: where best.pt goes.
        metric: key of the score in the metrics dicts (higher is better).
        resume: read the previous best from ``path``.
        ties_win: a score equal to the best replaces it (the later model is kept).
        keep: metric keys stored in the file (None: all).
        progress: a lower-is-better key (e.g. the validation loss) whose new low also counts as
            progress for early stopping, and which breaks ties of ``metric``: on a small
            validation set the score moves in coarse steps and stalls while the loss still
            falls (measured on 100 digits: patience on top-1 alone stopped runs at half length
            that were still improving; on 30 face patches top-1 sat at 28/30 from epoch 12 on,
            and keeping the first of the ties kept a warmup-stage model; README, small data).
    """

    def __init__(
        self,
        path: str | Path,
        metric: str,
        resume: bool,
        ties_win: bool = False,
        keep: tuple[str, ...] | None = None,
        progress: str | None = None,
    ) -> None:
        self.path, self.metric, self.ties_win, self.keep = Path(path), metric, ties_win, keep
        self.progress = progress
        self.best: dict[str, Any] = self._read() if resume else {}
        self.lowest = float("inf")  # lowest ``progress`` value so far (this session)
        self.stale = 0  # validations without progress (this session)

    def _read(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {}
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        return dict(state.get("metrics") or {})

    def is_better(self, metrics: dict[str, Any]) -> bool:
        """Whether ``metrics`` beats the best so far."""
        if not self.best or self.metric not in self.best:
            return True
        new, old = metrics[self.metric], self.best[self.metric]
        if new != old or self.ties_win:
            return new >= old if self.ties_win else new > old
        key = self.progress  # a tie: the lower ``progress`` value wins
        return key is not None and metrics.get(key, inf) < self.best.get(key, inf)

    def update(self, model: torch.nn.Module, meta: dict[str, Any], metrics: dict[str, Any]) -> bool:
        """Save ``model`` as best.pt when ``metrics`` beats the best; True when it did."""
        value = metrics.get(self.progress) if self.progress else None
        lower = value is not None and value < self.lowest
        if lower:
            self.lowest = value
        if not self.is_better(metrics):
            self.stale = 0 if lower else self.stale + 1
            return False
        self.best, self.stale = dict(metrics), 0
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        with atomic_path(self.path) as tmp:
            torch.save({"model": state, "meta": meta, "metrics": self.kept(metrics)}, tmp)
        return True

    def kept(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """The part of ``metrics`` stored in the file (``keep``)."""
        return {k: v for k, v in metrics.items() if self.keep is None or k in self.keep}

    def patience_spent(self, patience: int | None, label: str, done: int, total: int) -> str | None:
        """The early-stopping line once ``patience`` validations passed without progress (a
        better score, or a new low of ``progress``).

        Never in the first half of the run (``done`` of ``total`` epochs): the LR is still high
        there and small-data scores are noisy.
        """
        if not patience or self.stale < patience or done <= total / 2:
            return None
        return (
            f"early stop: {label}{' and ' + self.progress if self.progress else ''} did not "
            f"improve in {self.stale} validations (best "
            f"{self.best.get(self.metric, 0.0):.2f} at epoch {self.best.get('epoch')}, kept in "
            f"{self.path.name}); --patience 0 trains every epoch"
        )


def capture_rng_state() -> dict[str, Any]:
    """This process's python, numpy, torch and CUDA generator states, weights_only-safe."""
    version, mt, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(mt), gauss],
        "numpy": [
            np_name,
            torch.from_numpy(np_keys.astype(np.int64)),
            np_pos,
            np_has_gauss,
            np_gauss,
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    name, keys, pos, has_gauss, gauss_np = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss_np))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def save_training_state(
    path: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None,
    scaler: torch.amp.GradScaler | None,
    progress: dict[str, int],
    rng: list[dict[str, Any]],
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write a resumable checkpoint atomically (call on rank 0 only).

    Args:
        path: destination, usually :func:`last_checkpoint_path`.
        model: the unwrapped model (not DDP / compiled).
        optimizer: its optimizer.
        scheduler: an LR scheduler with ``state_dict`` or None.
        scaler: the fp16 grad scaler or None.
        progress: ``epoch``, ``step_in_epoch``, ``global_step``, ``images_seen``, ``world_size``.
        rng: :func:`capture_rng_state` of every rank, in rank order.
        meta: plain values (str/int/float/bool/None, lists, dicts) describing the run.

    Returns:
        ``path``.
    """
    state = {
        "format": FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else {},
        "progress": dict(progress),
        "rng": rng,
        "meta": meta or {},
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_training_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_training_state` without unpickling code.

    Raises:
        UserError: missing, unreadable or not a simmim-deploy training checkpoint.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"no checkpoint at {p}")
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for torn or foreign files
        raise UserError(f"cannot read checkpoint {p}: {str(exc).splitlines()[0]}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{p} is not a simmim-deploy training checkpoint")
    return state


def restore_training_state(
    state: dict,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None,
    scaler: torch.amp.GradScaler | None,
    rank: int = 0,
) -> dict[str, int]:
    """Load model/optimizer/scheduler/scaler and this rank's RNG state; return ``progress``.

    When the checkpoint came from a different number of ranks, ranks without a saved RNG state
    use rank 0's (training continues; bitwise equality with an uninterrupted run needs the
    same world size).
    """
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler"):
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and scaler.is_enabled() and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    rngs = state.get("rng") or []
    if rngs:
        restore_rng_state(rngs[rank] if rank < len(rngs) else rngs[0])
    return dict(state["progress"])


def state_digest(model: torch.nn.Module) -> str:
    """SHA-256 of the model's state dict (names, dtypes, shapes and bytes), 16 hex digits."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]
