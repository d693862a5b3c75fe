"""The run summary of ``train pretrain|classify|detect``: ``OUT/metrics.json``, typed and versioned.

:class:`RunSummary` is its one producer (each train command builds it at the end of a run and
:meth:`RunSummary.write` writes it) and its one parser (:meth:`RunSummary.from_dict`,
:func:`read_run_summary`: the CLI's closing line, the demo, the benchmarks and the tests read it
through them). Layout (``format_version`` 1)::

    {
      "top1": 93.1, "top5": 99.0, ..., "epoch": 12,    # fine-tuning: the best validation's scores,
                                                       # the keys ``evaluate`` writes (percent)
      "command": "classify",                           # pretrain | classify | detect
      "out": "runs/cls", "completed": true, "global_step": 900, "epochs_completed": 12,
      "images_seen": 57600, "precision": "bf16", "lr_plan": {"lr": ..., "lr_rule": ...},
      "model": "vit_small_patch16_224", "data": "...", "train_images": 4800,
      "skipped_files": 0, "skipped_list": null,
      ... command-specific fields (see :class:`RunSummary`), "format_version": 1
    }

Every score is a percentage (top-1, top-5, mAP, mAP50, ...), as everywhere in the project.
Torch-free, like the rest of ``core``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from simmim_deploy.core.atomic import atomic_write_text
from simmim_deploy.core.config import is_required
from simmim_deploy.core.errors import UserError

SUMMARY_VERSION = 1
SUMMARY_FILE = "metrics.json"
COMMANDS = ("pretrain", "classify", "detect")
SKIP_LIST = "skipped.txt"  # data.images.SkipLog's file in the run folder


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """How one training run went and what it wrote.

    Attributes:
        command: ``pretrain``, ``classify`` or ``detect``.
        out: the run folder.
        completed: the run reached its last epoch or stopped on patience (False: ``stop_at_step``
            ended this session; continue with ``--resume``).
        global_step: optimizer steps of the whole run.
        epochs_completed: full epochs done.
        images_seen: samples consumed by optimizer steps, all processes together.
        precision: what the loop trained in (``auto`` resolved).
        lr_plan: the learning rate and its derivation (``Optimization.record()``).
        model: timm name of the encoder.
        data: the training data, as the data loader describes it.
        train_images: training images (a count).
        skipped_files: files left out as unreadable (listed in ``OUT/skipped.txt``).
        best: fine-tuning: the best validation's scores (percent) and its ``epoch``; written at
            the top level of the JSON, under the keys ``evaluate`` writes.
        best_epoch: fine-tuning: the epoch of ``best``.
        last: fine-tuning: the last validation's scores.
        early_stop: fine-tuning: why patience ended the run, or None.
        checkpoint: fine-tuning: ``best.pt``.
        pretrained: fine-tuning: the encoder weights it started from (``none``: scratch).
        val_images: fine-tuning: validation images (a count).
        mode: classify: ``full`` fine-tuning or ``linear`` probe.
        class_counts: classify: ``{"train": {class: n}, "val": {class: n}}``.
        final_loss: pretrain: mean loss of the last logging window.
        encoder: pretrain: ``encoder.safetensors`` (``--pretrained`` of the fine-tuning).
        rank_digests: pretrain: digest of the final weights on every process (all equal).
        format_version: the layout (:data:`SUMMARY_VERSION`).
    """

    command: str
    out: str
    completed: bool
    global_step: int
    epochs_completed: int
    images_seen: int
    precision: str
    lr_plan: dict[str, Any]
    model: str
    data: str
    train_images: int
    skipped_files: int = 0
    best: dict[str, Any] = dataclasses.field(default_factory=dict)
    best_epoch: int | None = None
    last: dict[str, Any] = dataclasses.field(default_factory=dict)
    early_stop: str | None = None
    checkpoint: str | None = None
    pretrained: str | None = None
    val_images: int | None = None
    mode: str | None = None
    class_counts: dict[str, Any] | None = None
    final_loss: float | None = None
    encoder: str | None = None
    rank_digests: tuple[str, ...] = ()
    format_version: int = SUMMARY_VERSION

    def __post_init__(self) -> None:
        if self.command not in COMMANDS:
            raise UserError(f"run summary: unknown command {self.command!r} (expected {COMMANDS})")
        clash = set(self.best) & _FIELDS
        if clash:  # the scores share the top level with the fields
            raise ValueError(f"run summary: score keys {sorted(clash)} clash with its fields")

    @property
    def skipped_list(self) -> str | None:
        """``OUT/skipped.txt`` when files were skipped, else None."""
        return str(Path(self.out) / SKIP_LIST) if self.skipped_files else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON document: the best scores at the top level, then the fields of the command."""
        fields = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if self.command in _WRITTEN_BY.get(f.name, COMMANDS)
        }
        best = fields.pop("best", {})
        if self.command == "pretrain":
            fields["rank_digests"] = list(self.rank_digests)
        fields.update(
            skipped_list=self.skipped_list,
            format_version=SUMMARY_VERSION,
        )
        return {**best, **fields}

    def write(self, out: str | Path | None = None) -> Path:
        """Write ``OUT/metrics.json`` atomically (``out``: another folder); return its path."""
        path = Path(out if out is not None else self.out) / SUMMARY_FILE
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "run summary") -> RunSummary:
        """Parse a stored summary; keys that are not fields are the best scores.

        Raises:
            UserError: not a mapping, no or a newer ``format_version``, missing fields.
        """
        if not isinstance(values, dict):
            raise UserError(f"{where}: not a mapping; not a simmim-deploy run summary")
        version = values.get("format_version")
        if version is None or "command" not in values:
            raise UserError(
                f"{where} has no run-summary format_version: written by an older simmim-deploy "
                "(or by evaluate); re-run the training to get a readable summary"
            )
        if int(version) > SUMMARY_VERSION:
            raise UserError(
                f"{where} has run-summary format {version}; this simmim-deploy reads up to "
                f"{SUMMARY_VERSION}: upgrade simmim-deploy"
            )
        known = {k: v for k, v in values.items() if k in _FIELDS}
        best = {k: v for k, v in values.items() if k not in _FIELDS and k not in _DERIVED}
        required = [f.name for f in dataclasses.fields(cls) if is_required(f)]
        missing = [k for k in required if k not in known]
        if missing:
            raise UserError(f"{where} lacks {', '.join(missing)}: not a complete run summary")
        known["rank_digests"] = tuple(known.get("rank_digests") or ())
        return cls(**known, best=best)


def read_run_summary(run: str | Path) -> RunSummary:
    """The summary of a run folder (or of a ``metrics.json`` path).

    Raises:
        UserError: no such file, not JSON, or not a readable run summary.
    """
    path = Path(run)
    if path.is_dir():
        path = path / SUMMARY_FILE
    if not path.is_file():
        raise UserError(f"{path}: no run summary (has the training finished?)")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise UserError(f"{path} is not valid JSON") from None
    return RunSummary.from_dict(values, where=str(path))


# Fields only some commands write (the others: all three).
_WRITTEN_BY = {
    **dict.fromkeys(("final_loss", "encoder", "rank_digests"), ("pretrain",)),
    **dict.fromkeys(
        ("best", "best_epoch", "last", "early_stop", "checkpoint", "pretrained", "val_images"),
        ("classify", "detect"),
    ),
    **dict.fromkeys(("mode", "class_counts"), ("classify",)),
}
_FIELDS = {f.name for f in dataclasses.fields(RunSummary)} - {"best"}
_DERIVED = {"skipped_list"}  # written for readers, recomputed when parsed
