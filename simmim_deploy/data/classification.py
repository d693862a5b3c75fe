"""Labelled image data for classification fine-tuning and evaluation.

Sources: an ImageFolder tree (``ROOT/train/<class>/*`` and ``ROOT/val/<class>/*``, or one
``ROOT/<class>/*`` tree split with ``val_split``) and the labelled built-in sets
(``builtin:mnist``, ``builtin:digits``), which come with a fixed held-out split so every run is
scored on the same images. Low-label studies draw ``labels_per_class`` images per class (or a
``label_fraction`` of each class) from the training part only; the draw is stratified, seeded and
nested (for one seed the 10-per-class set is inside the 50-per-class set).

Bad files are never fatal: they are recorded in a :class:`~simmim_deploy.data.images.SkipLog`.
In training another image *of the same class* stands in (a random substitute would corrupt the
label); in evaluation the sample is returned with label ``-1`` and left out of the scores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

from simmim_deploy.core.errors import UserError
from simmim_deploy.data.builtin import (
    BUILTIN_PREFIX,
    HELD_OUT_FRACTION,
    held_out_split,
    load_builtin,
)
from simmim_deploy.data.images import BadImageError, SkipLog, find_images, load_rgb
from simmim_deploy.data.splits import stratified_split

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LabelledImages:
    """Images (file paths or decoded RGB images) with integer labels and class names.

    Attributes:
        items: one ``Path`` or ``PIL.Image.Image`` per sample.
        labels: ``(N,)`` int64 class ids into ``class_names``.
        class_names: names in class-id order.
    """

    items: Sequence[Path | Image.Image]
    labels: np.ndarray
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, indices: Sequence[int] | np.ndarray) -> LabelledImages:
        """The samples at ``indices`` (same class names)."""
        idx = np.asarray(indices, dtype=np.int64)
        return LabelledImages([self.items[i] for i in idx], self.labels[idx], self.class_names)

    def class_counts(self) -> dict[str, int]:
        """Samples per class name."""
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(c) for name, c in zip(self.class_names, counts, strict=True)}


@dataclasses.dataclass(frozen=True)
class ClassificationSplits:
    """The training and validation parts of a labelled data set."""

    train: LabelledImages
    val: LabelledImages
    class_names: list[str]
    description: str


def read_image_folder(root: str | Path, class_names: Sequence[str] | None = None) -> LabelledImages:
    """Read an ImageFolder tree: one sub-folder per class, images anywhere below it.

    Args:
        root: folder whose (non-hidden) sub-folders are the classes, sorted by name.
        class_names: fix the class order (e.g. a validation tree reusing the training classes);
            a folder not in it is an error, a class without a folder simply has no sample.

    Raises:
        UserError: missing folder, no class sub-folder with images, or an unknown class.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"data folder not found: {root} (give ROOT/<class>/*.jpg or builtin:NAME)")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files_by_class: dict[str, list[Path]] = {}
    for folder in folders:
        try:
            files_by_class[folder.name] = find_images(folder)
        except UserError:
            continue  # a folder without images is not a class
    if not files_by_class:
        raise UserError(
            f"no class folders with images under {root}: expected ROOT/<class>/<image> "
            "(or ROOT/train/<class> and ROOT/val/<class>)"
        )
    names = list(class_names) if class_names is not None else sorted(files_by_class)
    unknown = sorted(set(files_by_class) - set(names))
    if unknown:
        raise UserError(f"{root} has classes not in the training data: {', '.join(unknown[:5])}")
    items: list[Path | Image.Image] = []
    labels: list[int] = []
    for class_id, name in enumerate(names):
        for path in files_by_class.get(name, []):
            items.append(path)
            labels.append(class_id)
    return LabelledImages(items, np.asarray(labels, dtype=np.int64), names)


def load_builtin_labelled(name: str) -> LabelledImages:
    """A labelled built-in set (``mnist``, ``digits``) as :class:`LabelledImages`."""
    data = load_builtin(name)
    if data.labels is None or data.class_names is None:
        raise UserError(
            f"builtin:{name} has no labels; classification needs builtin:mnist or builtin:digits"
        )
    return LabelledImages(list(data.images), np.asarray(data.labels, np.int64), data.class_names)


def sample_labels(
    labels: np.ndarray,
    seed: int,
    labels_per_class: int | None = None,
    label_fraction: float | None = None,
) -> np.ndarray:
    """Stratified, seeded, nested low-label subset: indices to keep, sorted.

    Each class's samples are shuffled once by ``seed`` and the first ``K`` kept (``K =
    labels_per_class``, or ``ceil(label_fraction * n_class)``, at least 1), so a smaller
    budget is always a subset of a larger one for the same seed. A class with fewer than
    ``labels_per_class`` samples keeps all of them (logged).
    """
    if (labels_per_class is None) == (label_fraction is None):
        raise ValueError("give exactly one of labels_per_class and label_fraction")
    rng = np.random.default_rng(seed)
    keep = []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        if labels_per_class is not None:
            k = labels_per_class
            if k > len(idx):
                log.warning("class %s has only %d samples (< %d labels asked)", cls, len(idx), k)
        else:
            k = max(1, int(np.ceil(float(label_fraction) * len(idx))))
        keep.append(idx[:k])
    return np.sort(np.concatenate(keep))


def _split_folder_layout(root: Path) -> tuple[Path, Path] | None:
    """``(root/train, root/val)`` when the tree is already split, else None."""
    train, val = root / "train", root / "val"
    return (train, val) if train.is_dir() and val.is_dir() else None


def _load_source(data: str) -> tuple[LabelledImages, LabelledImages | None, str]:
    """``(pool, held_out_or_None, description)`` for one ``--data`` value."""
    if data.startswith(BUILTIN_PREFIX):
        name = data[len(BUILTIN_PREFIX) :]
        full = load_builtin_labelled(name)
        # The built-in held-out part never depends on the run seed: every run sees the same val.
        tr, va = held_out_split(full.labels)
        return full.subset(tr), full.subset(va), f"{data} (fixed {HELD_OUT_FRACTION:.0%} val)"
    root = Path(data).expanduser()
    layout = _split_folder_layout(root) if root.is_dir() else None
    if layout is not None:
        train = read_image_folder(layout[0])
        return train, read_image_folder(layout[1], train.class_names), f"{root} (train/ + val/)"
    return read_image_folder(root), None, str(root)


def load_classification_splits(
    data: str | Path,
    val_data: str | Path | None = None,
    val_split: float | None = None,
    labels_per_class: int | None = None,
    label_fraction: float | None = None,
    seed: int = 0,
    split_seed: int = 0,
) -> ClassificationSplits:
    """Resolve ``--data`` / ``--val-data`` / ``--val-split`` into training and validation sets.

    Args:
        data: ``builtin:mnist|digits``, an ImageFolder tree, or a tree with ``train/`` + ``val/``.
        val_data: a separate validation tree (or ``builtin:NAME``, whose held-out part is used).
        val_split: carve this stratified fraction of ``data`` out for validation.
        labels_per_class: keep K labelled images per class for training (low-label studies).
        label_fraction: keep this fraction of each class for training.
        seed: seeds the low-label draw.
        split_seed: seeds ``val_split`` (kept apart from ``seed`` so seeds share one val set).

    Raises:
        UserError: conflicting or missing validation options, bad paths, unlabelled data.
    """
    data = str(data)
    pool, held_out, desc = _load_source(data)
    if val_data is not None and val_split is not None:
        raise UserError("give either --val-data or --val-split, not both")
    if val_data is not None:
        vd = str(val_data)
        vpool, vheld, _ = _load_source(vd)
        val = vheld if vheld is not None else vpool
        if val.class_names != pool.class_names:
            val = _remap_classes(val, pool.class_names, vd)
        train = pool
        desc += f", val from {vd}"
    elif val_split is not None:
        if held_out is not None and not data.startswith(BUILTIN_PREFIX):
            raise UserError(f"{data} already has train/ and val/ folders: drop --val-split")
        if data.startswith(BUILTIN_PREFIX):
            raise UserError(f"{data} has a fixed held-out split: drop --val-split")
        tr, va = stratified_split(pool.labels, val_split, split_seed)
        train, val = pool.subset(tr), pool.subset(va)
        desc += f" ({val_split:g} stratified val split, seed {split_seed})"
    elif held_out is not None:
        train, val = pool, held_out
    else:
        raise UserError(
            f"{data} has no val/ folder: add --val-split 0.1 or --val-data PATH "
            "(or use ROOT/train/<class> and ROOT/val/<class>)"
        )
    if labels_per_class is not None or label_fraction is not None:
        train = train.subset(sample_labels(train.labels, seed, labels_per_class, label_fraction))
    return ClassificationSplits(train, val, pool.class_names, desc)


def load_eval_images(data: str | Path, class_names: Sequence[str]) -> LabelledImages:
    """Labelled images to score a trained classifier, labels in its ``class_names`` order.

    ``builtin:NAME`` gives its fixed held-out part, a tree with ``val/`` its ``val/`` folder,
    any other ImageFolder tree all of it.

    Raises:
        UserError: bad path, unlabelled data, or classes the model does not know.
    """
    pool, held_out, _ = _load_source(str(data))
    images = held_out if held_out is not None else pool
    if images.class_names != list(class_names):
        images = _remap_classes(images, list(class_names), str(data))
    return images


def _remap_classes(val: LabelledImages, names: list[str], where: str) -> LabelledImages:
    """Re-index ``val`` labels onto the training class order ``names``."""
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in val.class_names if n not in index]
    if missing:
        raise UserError(f"{where} has classes not in the training data: {', '.join(missing[:5])}")
    labels = np.asarray([index[val.class_names[c]] for c in val.labels], dtype=np.int64)
    return LabelledImages(val.items, labels, names)


class ClassificationDataset(torch.utils.data.Dataset):
    """Decode + transform :class:`LabelledImages`; bad files are recorded, never fatal.

    Args:
        images: the samples.
        transform: PIL RGB image -> ``(3, H, W)`` float tensor.
        skip_log: where bad files are recorded (None: only logged).
        on_bad: ``"substitute"`` (training: the next image of the same class stands in) or
            ``"mark"`` (evaluation: a blank image with label ``-1``, dropped from the scores).
        seed: when set, each sample's random augmentation is drawn from ``(seed, epoch,
            index)`` (the engine calls :meth:`set_epoch`), so a resumed run sees the same
            augmented images as an uninterrupted one, whatever the worker count.
    """

    def __init__(
        self,
        images: LabelledImages,
        transform: Callable[[Image.Image], torch.Tensor],
        skip_log: SkipLog | None = None,
        on_bad: Literal["substitute", "mark"] = "substitute",
        seed: int | None = None,
    ) -> None:
        self.images = images
        self.transform = transform
        self.skip_log = skip_log
        self.on_bad = on_bad
        self.seed = seed
        self.epoch = 0
        self._same_class = {
            int(c): np.flatnonzero(images.labels == c) for c in np.unique(images.labels)
        }

    def __len__(self) -> int:
        return len(self.images)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draw of ``epoch``."""
        self.epoch = epoch

    def _decode(self, index: int) -> Image.Image:
        item = self.images.items[index]
        return item.convert("RGB") if isinstance(item, Image.Image) else load_rgb(item)

    def _record(self, index: int, exc: BadImageError) -> None:
        log.warning("skipping bad image: %s", exc)
        if self.skip_log is not None:
            self.skip_log.record(self.images.items[index], str(exc))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self.seed is None:
            return self._load(index)
        with _seeded((self.seed, self.epoch, index)):
            return self._load(index)

    def _load(self, index: int) -> tuple[torch.Tensor, int]:
        label = int(self.images.labels[index])
        try:
            return self.transform(self._decode(index)), label
        except BadImageError as exc:
            self._record(index, exc)
        if self.on_bad == "mark":
            return self.transform(Image.new("RGB", (32, 32))), -1
        peers = self._same_class[label]
        start = int(np.searchsorted(peers, index))
        for step in range(1, len(peers)):
            other = int(peers[(start + step) % len(peers)])
            try:
                return self.transform(self._decode(other)), label
            except BadImageError as exc:
                self._record(other, exc)
        what = f"class {self.images.class_names[label]!r}"
        if self.skip_log is not None:
            raise self.skip_log.nothing_readable(what)
        raise UserError(f"every image of {what} is unreadable")


@contextlib.contextmanager
def _seeded(key: tuple[int, int, int]) -> Iterator[None]:
    """Seed python/numpy/torch (timm augmentations draw from all three), then restore them."""
    seed = int(np.random.SeedSequence(list(key)).generate_state(1)[0])
    py, npy, th = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    # the generator itself: torch.manual_seed also seeds CUDA and costs ~5 ms a call
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(th)
