"""Labelled data: folder layouts, stratified splits, low-label sampling, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from simmim_deploy.core.errors import UserError
from simmim_deploy.data.classification import (
    ClassificationDataset,
    load_classification_splits,
    read_image_folder,
    sample_labels,
    stratified_split,
)
from simmim_deploy.data.images import SkipLog


def _tree(root: Path, counts: dict[str, int], bad: str | None = None) -> Path:
    """Write real PNGs: class c's images are filled with a grey level that encodes the class."""
    for ci, (name, n) in enumerate(counts.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (12, 10), (20 * ci, i, 0)).save(root / name / f"{i:03d}.png")
    if bad:
        (root / bad / "000.png").write_bytes(b"not a png")
    return root


def _to_tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(img.resize((8, 8)))).permute(2, 0, 1).float()


def test_image_folder_classes_sorted_and_hidden_ignored(spaced_tmp: Path) -> None:
    root = _tree(spaced_tmp, {"dog": 2, "cat": 3})
    (root / ".cache").mkdir()
    (root / "empty").mkdir()
    data = read_image_folder(root)
    assert data.class_names == ["cat", "dog"]
    assert data.class_counts() == {"cat": 3, "dog": 2}
    with pytest.raises(UserError, match="no class folders"):
        read_image_folder(root / "empty")


def test_train_val_layout_and_val_class_order(tmp_path: Path) -> None:
    _tree(tmp_path / "train", {"a": 3, "b": 3, "c": 2})
    _tree(tmp_path / "val", {"c": 1, "a": 2})  # fewer classes: mapped by name
    splits = load_classification_splits(tmp_path)
    assert splits.class_names == ["a", "b", "c"]
    assert splits.val.class_counts() == {"a": 2, "b": 0, "c": 1}
    with pytest.raises(UserError, match="drop --val-split"):
        load_classification_splits(tmp_path, val_split=0.2)


def test_single_tree_needs_a_val_option_and_splits_stratified(tmp_path: Path) -> None:
    _tree(tmp_path, {"a": 10, "b": 20})
    with pytest.raises(UserError, match="--val-split"):
        load_classification_splits(tmp_path)
    s = load_classification_splits(tmp_path, val_split=0.2, split_seed=3)
    assert s.val.class_counts() == {"a": 2, "b": 4}
    assert s.train.class_counts() == {"a": 8, "b": 16}
    assert not set(s.val.items) & set(s.train.items)
    again = load_classification_splits(tmp_path, val_split=0.2, split_seed=3, seed=99)
    assert list(again.val.items) == list(s.val.items)  # the run seed does not move val


def test_stratified_split_keeps_each_class_on_both_sides() -> None:
    labels = np.array([0] * 2 + [1] * 50)
    tr, va = stratified_split(labels, 0.1, seed=0)
    assert (labels[va] == 0).sum() == 1 and (labels[tr] == 0).sum() == 1
    assert (labels[va] == 1).sum() == 5
    with pytest.raises(UserError):
        stratified_split(labels, 1.0, seed=0)


def test_low_label_sampling_is_stratified_seeded_and_nested() -> None:
    labels = np.repeat(np.arange(4), [30, 30, 30, 5])
    k10 = sample_labels(labels, seed=1, labels_per_class=10)
    k20 = sample_labels(labels, seed=1, labels_per_class=20)
    assert np.bincount(labels[k10]).tolist() == [10, 10, 10, 5]  # class 3 only has 5
    assert set(k10) <= set(k20)
    assert not np.array_equal(k10, sample_labels(labels, seed=2, labels_per_class=10))
    np.testing.assert_array_equal(k10, sample_labels(labels, seed=1, labels_per_class=10))
    frac = sample_labels(labels, seed=0, label_fraction=0.1)
    assert np.bincount(labels[frac]).tolist() == [3, 3, 3, 1]


def test_builtin_digits_fixed_held_out_split_and_low_labels() -> None:
    pytest.importorskip("sklearn")
    a = load_classification_splits("builtin:digits", labels_per_class=5, seed=0)
    b = load_classification_splits("builtin:digits", labels_per_class=5, seed=1)
    assert len(a.val) == len(b.val) == 359
    assert a.class_names == [str(d) for d in range(10)]
    assert a.train.class_counts() == {str(d): 5 for d in range(10)}
    assert len(a.train) == 50
    with pytest.raises(UserError, match="fixed held-out"):
        load_classification_splits("builtin:digits", val_split=0.1)
    with pytest.raises(UserError, match="no labels"):
        load_classification_splits("builtin:photos")


def test_bad_file_is_substituted_in_training_and_marked_in_eval(tmp_path: Path) -> None:
    _tree(tmp_path, {"a": 3, "b": 3}, bad="b")
    data = read_image_folder(tmp_path)
    bad_index = [i for i, p in enumerate(data.items) if p == tmp_path / "b" / "000.png"]
    skip = SkipLog(tmp_path / "run")
    train_ds = ClassificationDataset(data, _to_tensor, skip, on_bad="substitute")
    x, y = train_ds[bad_index[0]]
    assert y == 1 and x.shape == (3, 8, 8)
    assert x[0].max() == 20  # the stand-in is a class-b image (red level 20)
    eval_ds = ClassificationDataset(data, _to_tensor, skip, on_bad="mark")
    assert eval_ds[bad_index[0]][1] == -1
    assert skip.finalize() == 1  # the same file seen twice counts once
    assert "not an image" in (tmp_path / "run" / "skipped.txt").read_text()
