"""Classification metrics against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from simmim_deploy.train.metrics import (
    classification_metrics,
    confusion_matrix,
    per_class_scores,
    plot_confusion_matrix,
    plot_training_curves,
    topk_accuracy,
)

# 3 classes, 5 samples. Argmax predictions: [0, 1, 2, 2, 1]; targets: [0, 1, 1, 2, 0].
LOGITS = np.array(
    [
        [0.9, 0.05, 0.05],  # true 0, pred 0
        [0.1, 0.8, 0.1],  # true 1, pred 1
        [0.2, 0.3, 0.5],  # true 1, pred 2 (1 is 2nd)
        [0.1, 0.2, 0.7],  # true 2, pred 2
        [0.3, 0.6, 0.1],  # true 0, pred 1 (0 is 2nd)
    ]
)
TARGETS = np.array([0, 1, 1, 2, 0])


def test_topk_accuracy_by_hand() -> None:
    assert topk_accuracy(LOGITS, TARGETS, 1) == pytest.approx(3 / 5)
    assert topk_accuracy(LOGITS, TARGETS, 2) == pytest.approx(5 / 5)
    # k beyond the class count is clamped: always right.
    assert topk_accuracy(LOGITS, TARGETS, 5) == pytest.approx(1.0)
    assert topk_accuracy(np.zeros((0, 3)), np.zeros((0,), dtype=int), 1) == 0.0


def test_confusion_matrix_rows_are_truth() -> None:
    cm = confusion_matrix(LOGITS.argmax(1), TARGETS, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_per_class_precision_recall_f1_by_hand() -> None:
    s = per_class_scores(confusion_matrix(LOGITS.argmax(1), TARGETS, 3))
    # class 0: tp 1, predicted 1, support 2 -> P 1, R .5, F1 2/3
    # class 1: tp 1, predicted 2, support 2 -> P .5, R .5, F1 .5
    # class 2: tp 1, predicted 2, support 1 -> P .5, R 1, F1 2/3
    np.testing.assert_allclose(s["precision"], [1.0, 0.5, 0.5])
    np.testing.assert_allclose(s["recall"], [0.5, 0.5, 1.0])
    np.testing.assert_allclose(s["f1"], [2 / 3, 0.5, 2 / 3])
    assert s["support"].tolist() == [2, 2, 1]


def test_never_predicted_class_scores_zero_not_nan() -> None:
    s = per_class_scores(np.array([[2, 0], [1, 0]]))
    assert s["precision"].tolist() == [2 / 3, 0.0]
    assert s["f1"][1] == 0.0


def test_classification_metrics_report(tmp_path) -> None:
    m = classification_metrics(LOGITS, TARGETS, ["a", "b", "c"])
    assert m["top1"] == pytest.approx(60.0)
    assert m["top5"] == pytest.approx(100.0)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 2 / 3) / 3)
    assert m["per_class"]["c"] == {
        "precision": 0.5,
        "recall": 1.0,
        "f1": pytest.approx(2 / 3),
        "support": 1,
    }
    with pytest.raises(ValueError, match="logits must be"):
        classification_metrics(LOGITS, TARGETS, ["a", "b"])


def test_plots_are_png_files(tmp_path) -> None:
    cm_png = plot_confusion_matrix(np.array([[3, 1], [0, 4]]), ["cat", "dog"], tmp_path / "cm.png")
    history = [
        {"epoch": 1, "train_loss": 2.0, "val_top1": 30.0},
        {"epoch": 2, "train_loss": 1.5, "val_top1": 45.0, "val_top5": 90.0},
    ]
    curves = plot_training_curves(history, tmp_path / "curves.png")
    for path in (cm_png, curves):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
