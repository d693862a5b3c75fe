"""Post-processing on hand-made boxes: threshold, class-aware NMS, top-k, padding, mapping."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from simmim_deploy.core.boxes import boxes_to_original, letterbox_geometry
from simmim_deploy.data.coco import letterbox
from simmim_deploy.models import postprocess as pp
from simmim_deploy.models.postprocess import PAD_LABEL, PostprocessConfig, postprocess

CFG = PostprocessConfig(score_thresh=0.1, nms_iou=0.5, pre_nms_topk=100, max_dets=5)


def _scores(per_box: list[tuple[int, float]], num_classes: int = 3) -> torch.Tensor:
    s = torch.zeros(1, len(per_box), num_classes)
    for i, (label, score) in enumerate(per_box):
        s[0, i, label] = score
    return s


def test_nms_keeps_the_best_of_overlapping_boxes_of_one_class():
    boxes = torch.tensor([[[10.0, 10, 30, 30], [11, 11, 31, 31], [40, 40, 60, 60]]])
    out_boxes, scores, labels, num = postprocess(
        boxes, _scores([(0, 0.8), (0, 0.9), (0, 0.7)]), CFG, 64
    )
    assert num.tolist() == [2]
    assert torch.allclose(scores[0, :2], torch.tensor([0.9, 0.7]))
    assert torch.equal(out_boxes[0, 0], boxes[0, 1]) and torch.equal(out_boxes[0, 1], boxes[0, 2])
    assert labels[0, :2].tolist() == [0, 0]


def test_nms_is_class_aware_and_per_image():
    same = torch.tensor([[10.0, 10, 30, 30], [10, 10, 30, 30]])
    boxes = torch.stack([same, same])  # two images, identical boxes
    scores = torch.cat([_scores([(0, 0.9), (1, 0.8)]), _scores([(2, 0.6), (2, 0.5)])])
    _, out_scores, labels, num = postprocess(boxes, scores, CFG, 64)
    assert num.tolist() == [2, 1]  # different classes both survive; same class suppressed
    assert labels[0, :2].tolist() == [0, 1] and labels[1, 0].item() == 2
    assert torch.allclose(out_scores[1, 0], torch.tensor(0.6))


def test_threshold_topk_and_padding():
    xs = torch.arange(8, dtype=torch.float32) * 8
    boxes = torch.stack([xs, xs, xs + 6, xs + 6], 1).unsqueeze(0)  # 8 disjoint boxes
    per_box = [(1, 0.05 + 0.1 * i) for i in range(8)]  # 0.05 is below the threshold
    out_boxes, scores, labels, num = postprocess(boxes, _scores(per_box), CFG, 64)
    assert out_boxes.shape == (1, 5, 4) and scores.shape == (1, 5) and labels.dtype == torch.int64
    assert num.item() == 5  # top-k caps 7 survivors at 5
    assert torch.allclose(scores[0], torch.tensor([0.75, 0.65, 0.55, 0.45, 0.35]))
    few = _scores([(1, 0.5), (2, 0.05), (0, 0.3)] + [(0, 0.0)] * 5)
    out_boxes, scores, labels, num = postprocess(boxes, few, CFG, 64)
    assert num.item() == 2
    assert scores[0, 2:].eq(0).all() and labels[0, 2:].eq(PAD_LABEL).all()
    assert out_boxes[0, 2:].eq(0).all()
    assert labels[0, :2].tolist() == [1, 0]


def test_mapping_back_to_original_coordinates():
    geo = letterbox_geometry(200, 100, 64)  # scale 0.32, resized 64x32, pad bottom
    assert geo.resized == (64, 32) and geo.pad == (0, 0)
    net = np.array([[3.2, 6.4, 32.0, 30.0], [60.0, 20.0, 70.0, 40.0]], dtype=np.float32)
    orig = boxes_to_original(net, geo.scale, geo.pad, geo.original)
    np.testing.assert_allclose(orig[0], [10, 20, 100, 93.75], rtol=1e-5)
    np.testing.assert_allclose(orig[1], [187.5, 62.5, 200, 100], rtol=1e-5)  # clipped
    shifted = boxes_to_original(net + [4, 2, 4, 2], 0.32, pad=(4, 2))
    np.testing.assert_allclose(shifted[0], orig[0], rtol=1e-5)
    t = pp.boxes_to_original(torch.from_numpy(net), geo.scale, (0, 0), geo.original)
    np.testing.assert_allclose(t.numpy(), orig, rtol=1e-6)


def test_letterbox_and_back_round_trips_boxes():
    image = Image.new("RGB", (150, 90), (255, 0, 0))
    boxes = np.array([[15.0, 9.0, 75.0, 81.0]], dtype=np.float32)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    tensor, net_boxes, scale = letterbox(image, boxes, 64, mean, std)
    assert tensor.shape == (3, 64, 64)
    assert torch.allclose(tensor[:, 38:, :], torch.zeros(1))  # padded bottom is the mean
    assert torch.allclose(tensor[0, :38], torch.full((38, 64), 2.0))  # red, normalised
    np.testing.assert_allclose(boxes_to_original(net_boxes, scale), boxes, rtol=1e-5)


def _greedy_nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> set[int]:
    """Plain greedy NMS in numpy (the independent reference): indices kept."""
    order, kept = list(np.argsort(-scores, kind="stable")), []
    for i in order:
        x0 = np.maximum(boxes[i, 0], boxes[kept, 0])
        y0 = np.maximum(boxes[i, 1], boxes[kept, 1])
        x1 = np.minimum(boxes[i, 2], boxes[kept, 2])
        y1 = np.minimum(boxes[i, 3], boxes[kept, 3])
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
        if not kept or (inter / (area(boxes[i]) + area(boxes[kept]) - inter)).max() <= iou:
            kept.append(i)
    return set(kept)


def test_batched_nms_equals_greedy_nms_per_image_and_class_with_many_zero_scores():
    rng = np.random.default_rng(0)
    b, m, classes, size = 6, 60, 3, 64
    xy = rng.uniform(0, size - 12, (b, m, 2))
    wh = rng.uniform(4, 12, (b, m, 2))
    boxes = np.concatenate([xy, xy + wh], -1).astype(np.float32)
    scores = rng.uniform(0.05, 1, (b, m)).astype(np.float32)
    scores[rng.uniform(size=(b, m)) < 0.7] = 0.0  # most candidates are padding, as in real runs
    labels = rng.integers(0, classes, (b, m))
    kept = pp.batched_class_nms(
        torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels), classes,
        0.5, size,
    ).numpy()  # fmt: skip
    for i in range(b):
        want = np.zeros(m, np.float32)
        for c in range(classes):
            idx = np.flatnonzero((labels[i] == c) & (scores[i] > 0))
            for j in _greedy_nms(boxes[i, idx], scores[i, idx], 0.5):
                want[idx[j]] = scores[i, idx[j]]
        np.testing.assert_array_equal(kept[i], want)
