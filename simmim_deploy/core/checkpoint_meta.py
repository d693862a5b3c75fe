"""The ``meta`` of a fine-tuned checkpoint: what export, evaluation and serving read from it.

A fine-tuned checkpoint (``best.pt`` / ``last.pt``, written by ``train classify|detect``) is a
``torch.save`` of plain containers, loadable with ``weights_only=True``:
``{"model": state_dict, "meta": CheckpointMeta.to_dict(), ...}``. :class:`CheckpointMeta` is
its one producer (the trainers, ``export --prune`` and the test fixtures build it) and its one
parser (:func:`simmim_deploy.models.factory.read_checkpoint`). Torch-free, like the rest of
``core``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from simmim_deploy.core.data_split import DataSplit
from simmim_deploy.core.errors import UserError
from simmim_deploy.core.preprocess import PreprocessSpec

META_VERSION = 1
TASKS = ("classification", "detection")
# ``kind`` of the checkpoints ``train pretrain`` writes (their meta is not a CheckpointMeta).
PRETRAIN_KIND = "simmim-pretrain"


@dataclasses.dataclass(frozen=True)
class CheckpointMeta:
    """Everything needed to rebuild, evaluate and export a task model.

    Attributes:
        task: ``classification`` or ``detection``.
        model_name: timm name of the encoder.
        img_size: square network input side.
        class_names: one name per class, in logit order.
        mean, std: normalisation (the encoder's timm data config).
        interpolation: resampling of the eval transform.
        crop_pct: classification eval: resize to ``img_size / crop_pct``, centre-crop.
        model_kwargs: extra ``timm.create_model`` kwargs that shape the architecture.
        head: task-specific architecture facts (plain values).
        postprocess: detection post-processing (threshold, NMS, top-k), else None.
        pruned_arch: kept dims per block, set by ``export --prune``; None when unpruned.
        pretrained: the encoder weights training started from (``none``: scratch).
        train_config: the resolved training config (the data split is read back from it).
        format_version: the layout of this meta (:data:`META_VERSION`).
    """

    task: str
    model_name: str
    img_size: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    head: dict[str, Any] = dataclasses.field(default_factory=dict)
    postprocess: dict[str, Any] | None = None
    pruned_arch: dict[str, Any] | None = None
    pretrained: str | None = None
    train_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    format_version: int = META_VERSION

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise UserError(f"checkpoint meta: unknown task {self.task!r} (expected {TASKS})")
        if not self.class_names:
            raise UserError("checkpoint meta has no class names")
        if int(self.img_size) < 1:
            raise UserError(f"checkpoint meta: img_size must be positive, got {self.img_size}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "checkpoint") -> CheckpointMeta:
        """Parse a stored meta; refuse other kinds of checkpoints and unknown versions.

        Keys this version does not know (older metas carried ``preprocess``/``outputs``) are
        dropped; a missing ``format_version`` is version 1.

        Raises:
            UserError: a pre-training checkpoint, a newer format, or missing facts.
        """
        if not isinstance(values, dict):
            raise UserError(f"{where}: meta is not a mapping; not a simmim-deploy checkpoint")
        if values.get("kind") == PRETRAIN_KIND:
            raise UserError(
                f"{where} is a SimMIM pre-training checkpoint: fine-tune it first with "
                "simmim-deploy train classify or train detect (--pretrained ENCODER)"
            )
        version = int(values.get("format_version", 1))
        if version > META_VERSION:
            raise UserError(
                f"{where} has checkpoint meta format {version}; this simmim-deploy reads up to "
                f"{META_VERSION}: upgrade simmim-deploy"
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in values.items() if k in fields}
        if "class_names" not in known and values.get("num_classes"):
            known["class_names"] = [str(i) for i in range(int(values["num_classes"]))]
        required = ("task", "model_name", "img_size", "class_names", "mean", "std")
        missing = [k for k in required if k not in known]
        if missing:
            raise UserError(
                f"{where} meta lacks {', '.join(missing)}: not a checkpoint written by "
                "simmim-deploy train classify|detect"
            )
        known["class_names"] = tuple(str(c) for c in known["class_names"])
        for key in ("mean", "std"):
            known[key] = tuple(float(v) for v in known[key])
        known["img_size"] = int(known["img_size"])
        known["format_version"] = version
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        """Plain containers only (``weights_only=True`` loads them); ``num_classes`` included."""
        out = dataclasses.asdict(self)
        out["class_names"] = list(self.class_names)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        out["num_classes"] = self.num_classes
        out["format_version"] = META_VERSION
        return out

    def preprocess(self) -> PreprocessSpec:
        """The evaluation transform (the manifest's ``preprocess`` block)."""
        return PreprocessSpec.eval_transform(
            self.task, self.img_size, self.mean, self.std, self.interpolation, self.crop_pct
        )

    def data_split(self) -> DataSplit | None:
        """How the training run split its data (None: not recorded)."""
        return DataSplit.from_meta({"task": self.task, "train_config": self.train_config})
