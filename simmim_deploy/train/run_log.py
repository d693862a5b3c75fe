"""What a training run reports: ``metrics.csv``, TensorBoard events and a rich progress bar.

Only rank 0 reports; other ranks get a disabled logger. On resume, rows and events logged after
the checkpoint's step are dropped (they will be logged again), so ``metrics.csv`` of a resumed run
reads like that of an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from simmim_deploy.core.atomic import atomic_write_text

METRICS_CSV = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"


class RunLogger:
    """Writes metric rows to CSV and TensorBoard and drives the progress bar.

    Args:
        out_dir: the run folder.
        enabled: False on ranks other than 0 (everything becomes a no-op).
        resume_step: global step of the checkpoint resumed from, or None for a fresh run.
        progress: show the rich progress bar.
    """

    def __init__(
        self, out_dir: str | Path, enabled: bool, resume_step: int | None, progress: bool = True
    ) -> None:
        self.enabled = enabled
        self.path = Path(out_dir) / METRICS_CSV
        self.console = Console(stderr=True)
        self._rows: list[dict[str, Any]] = []
        self._columns: list[str] = []
        self._tb = None
        self._bar: Progress | None = None
        self._task = None
        if not enabled:
            return
        if resume_step is not None and self.path.is_file():
            self._reload(resume_step)
        else:
            self._rewrite()
        from torch.utils.tensorboard import SummaryWriter

        purge = resume_step + 1 if resume_step is not None else None
        self._tb = SummaryWriter(log_dir=str(Path(out_dir) / TENSORBOARD_DIR), purge_step=purge)
        if progress:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )

    def _reload(self, resume_step: int) -> None:
        with open(self.path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            self._columns = list(reader.fieldnames or [])
            self._rows = [r for r in reader if _as_int(r.get("step")) <= resume_step]
        self._rewrite()

    def _rewrite(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self._columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self._rows)
        atomic_write_text(self.path, buf.getvalue() if self._columns else "")

    def log(self, step: int, values: dict[str, Any]) -> None:
        """Record one row (``step`` plus named values) in ``metrics.csv`` and TensorBoard."""
        if not self.enabled:
            return
        row = {"step": step, **{k: _fmt(v) for k, v in values.items()}}
        self._rows.append(row)
        new = [k for k in row if k not in self._columns]
        if new:  # a new column (e.g. the first evaluation) rewrites the file once
            self._columns.extend(new)
            self._rewrite()
        else:
            with open(self.path, "a", newline="", encoding="utf-8") as fh:
                csv.DictWriter(fh, fieldnames=self._columns, extrasaction="ignore").writerow(row)
        assert self._tb is not None
        for key, value in values.items():
            if isinstance(value, (int, float)) and key not in ("epoch", "step"):
                self._tb.add_scalar(key, value, step)
        self._tb.flush()

    def start_bar(self, total: int, completed: int, description: str) -> None:
        """Show a progress bar for ``total`` optimizer steps, ``completed`` already done."""
        if self._bar is None:
            return
        if self._task is None:
            self._bar.start()
            self._task = self._bar.add_task(description, total=total, stats="")
        self._bar.update(self._task, total=total, completed=completed, description=description)

    def advance(self, stats: str) -> None:
        """One optimizer step done; ``stats`` e.g. ``"loss 0.52 lr 1e-4 312 img/s"``."""
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, advance=1, stats=stats)

    def print(self, message: str) -> None:
        """A line for the user (rank 0 only)."""
        if self.enabled:
            self.console.print(message, highlight=False, soft_wrap=True)

    def close(self) -> None:
        """Stop the bar and flush TensorBoard."""
        if self._bar is not None and self._task is not None:
            self._bar.stop()
            self._task = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


class MetricWindow:
    """Running sums of the training steps between two metric rows."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.steps = 0
        self.images = 0
        self.loss = 0.0
        self.grad_norm = torch.zeros(())
        self.logs: dict[str, Any] = {}

    def add_logs(self, logs: dict[str, Any], weight: float) -> None:
        for key, value in logs.items():
            value = value.detach().float() if isinstance(value, torch.Tensor) else float(value)
            self.logs[key] = self.logs.get(key, 0.0) + value * weight

    def add_step(self, loss: float, grad_norm: torch.Tensor, images: int) -> None:
        self.steps += 1
        self.images += images
        self.loss += loss
        self.grad_norm = self.grad_norm.to(grad_norm.device) + grad_norm.float()

    def rate(self) -> float:
        return self.images / max(time.perf_counter() - self.start, 1e-9)

    def summary(self) -> dict[str, float]:
        n = max(self.steps, 1)
        out = {
            "loss": self.loss / n,
            "grad_norm": float(self.grad_norm) / n,
            "images_per_s": self.rate(),
        }
        out.update({k: float(v) / n for k, v in self.logs.items()})
        return out


def _fmt(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.6g}")
    return value


def _as_int(text: Any) -> int:
    try:
        return int(float(text))
    except (TypeError, ValueError):
        return 0
